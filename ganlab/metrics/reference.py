"""Reference (real-data) features, computed once per data split and cached on disk.

The cache key is a sha256 over: ``fingerprint`` (the evaluator passes the digest of the split's
pixels, ``GANDataModule.split_digest``: the same images give the same key even when the data
cache is rebuilt under a new key or the source's metadata changes), the split, the requested ``n_real`` (``None`` = the whole split), the seed that picks the subset,
the extractor's id and its weights' sha256. A file holds the features (float32 ``(n, 2048)``, what
KID, precision/recall and density/coverage need), torch-fidelity's FID statistics of them and the
indices of the images used, so a second evaluation only extracts features of generated samples.
Files live in ``$GANLAB_CACHE/metrics/reference`` (default ``~/.cache/ganlab``) and are written
atomically, so concurrent runs at worst compute the same file twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import zipfile
from typing import Any, Callable

import numpy as np
import torch

from ganlab.metrics.core import fid_statistics
from ganlab.metrics.inception import ganlab_cache_dir
from ganlab.utils.files import atomic_write

CACHE_VERSION = 2  # 2: keyed by the split's pixel digest (1: by the data fingerprint)


@dataclasses.dataclass
class ReferenceFeatures:
    features: torch.Tensor  # (n, D) float32, CPU
    fid_stats: dict[str, np.ndarray]  # torch-fidelity's {"mu", "sigma"}
    indices: np.ndarray  # rows of the split that were used
    meta: dict[str, Any]
    path: str | None
    from_cache: bool

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


def reference_cache_dir(cache_dir: str | None = None) -> str:
    return cache_dir or os.path.join(ganlab_cache_dir(), "metrics", "reference")


def reference_key(
    *, fingerprint: str, split: str, n_real: int | None, extractor_id: str, weights_sha256: str, subset_seed: int
) -> dict[str, Any]:
    return {
        "cache_version": CACHE_VERSION,
        "fingerprint": str(fingerprint),
        "split": str(split),
        "n_real": None if n_real is None else int(n_real),
        "subset_seed": int(subset_seed),
        "extractor_id": str(extractor_id),
        "weights_sha256": str(weights_sha256),
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def select_indices(n_total: int, n_real: int | None, seed: int) -> np.ndarray:
    """All rows when ``n_real`` is None or >= the split size; else a seeded uniform subset, sorted."""
    if n_real is None or int(n_real) >= n_total:
        return np.arange(n_total)
    rng = np.random.default_rng(int(seed))
    return np.sort(rng.choice(n_total, size=int(n_real), replace=False))


def reference_features(
    images: Any | Callable[[], Any],
    *,
    fingerprint: str,
    split: str,
    extractor,
    n_real: int | None = None,
    subset_seed: int = 0,
    cache_dir: str | None = None,
    use_cache: bool = True,
    batch_size: int | None = None,
) -> ReferenceFeatures:
    """Features of (a seeded subset of) a split, from the cache when the key matches.

    ``images`` is the split's uint8 ``(N, C, H, W)`` array or a zero-argument callable returning it
    (so a cache hit never touches the data). ``extractor`` needs ``extract(images, batch_size=...)``
    and ``describe()`` with ``extractor_id`` and ``weights_sha256`` (see :class:`InceptionExtractor`).
    """
    desc = extractor.describe()
    key = reference_key(fingerprint=fingerprint, split=split, n_real=n_real, extractor_id=desc["extractor_id"],
                        weights_sha256=desc["weights_sha256"], subset_seed=subset_seed)
    folder = reference_cache_dir(cache_dir)
    path = os.path.join(folder, f"ref-{key_digest(key)}.npz")
    if use_cache and os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("key") == key:
                    return ReferenceFeatures(torch.from_numpy(z["features"].copy()),
                                             {"mu": z["mu"].copy(), "sigma": z["sigma"].copy()},
                                             z["indices"].copy(), meta, path, True)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable, torn or foreign file: recompute and overwrite

    arr = images() if callable(images) else images
    idx = select_indices(len(arr), n_real, subset_seed)
    t0 = time.perf_counter()
    chunks = []
    step = 4096  # bounded host memory: read the (memmapped) split in slices
    for s in range(0, len(idx), step):
        chunk = np.asarray(arr[idx[s : s + step]])
        chunks.append(extractor.extract(chunk, batch_size=batch_size))
    feats = torch.cat(chunks) if chunks else torch.empty(0, 2048)
    stats = fid_statistics(feats)
    meta = {
        "key": key,
        "n": int(len(idx)),
        "n_split": int(len(arr)),
        "image_shape": list(np.asarray(arr[:1]).shape[1:]),
        "seconds": round(time.perf_counter() - t0, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **{k: v for k, v in desc.items() if k not in key},
    }
    if use_cache:  # not durable (no fsync): a cache, and a torn file is recomputed on the next read
        atomic_write(path, lambda f: np.savez(f, features=feats.numpy(), mu=stats["mu"], sigma=stats["sigma"],
                                              indices=idx, meta=np.array(json.dumps(meta))))
    return ReferenceFeatures(feats, stats, idx, meta, path if use_cache else None, False)


__all__ = ["ReferenceFeatures", "reference_features", "reference_key", "select_indices", "reference_cache_dir"]
