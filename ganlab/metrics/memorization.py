"""Memorisation check: how close generated samples come to training images, in feature space.

Definitions (Euclidean distances between Inception pool3 features ``phi``):

* ``d_fake(i) = min_j ||phi(fake_i) - phi(real_j)||`` - distance from each fake to its nearest
  training image (``nn_index(i)`` is that image);
* ``d_real(j) = min_{k != j} ||phi(real_j) - phi(real_k)||`` - distance from each training image
  to its nearest *other* training image;
* ``frac_closer_than_real_median`` - fraction of fakes with ``d_fake(i) < median_j d_real(j)``.
  A generator whose samples are fresh draws from the data distribution lands near **0.5** (a new
  sample is as far from the N training images as a training image is from the other N - 1);
  copying training images pushes it towards 1;
* ``frac_closer_than_real_p01`` - the same against the 1 % quantile of ``d_real``: about **0.01**
  without memorisation; markedly more means near-copies;
* ``median_distance_ratio`` - ``median(d_fake) / median(d_real)``: about 1 for fresh samples,
  below 1 suspicious, above 1 when samples lie off the data manifold.

The reference should be the *training* split (what a model could have memorised) and the numbers
are comparable across runs only at equal ``n_real`` (nearest-neighbour distances shrink as the
reference set grows).
"""

from __future__ import annotations

import numpy as np
import torch

from ganlab.metrics.core import as_features


def nearest_neighbors(
    query, reference, *, exclude_self: bool = False, batch_size: int = 2048, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance and index of each query row's nearest reference row (``exclude_self`` when the two
    sets are the same array: the diagonal is skipped)."""
    q, r = as_features(query), as_features(reference)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    r_dev = r.to(dev)
    dists, idxs = [], []
    for s in range(0, len(q), batch_size):
        d = torch.cdist(q[s : s + batch_size].to(dev), r_dev)
        if exclude_self:
            rows = torch.arange(d.shape[0], device=dev)
            d[rows, rows + s] = float("inf")
        v, i = d.min(dim=1)
        dists.append(v.cpu())
        idxs.append(i.cpu())
    return torch.cat(dists), torch.cat(idxs)


def memorization_stats(real_features, fake_features, *, quantile: float = 0.01, device=None) -> dict:
    """Summary numbers (see the module docstring) plus per-fake arrays ``d_fake`` and ``nn_index``."""
    d_fake, nn_idx = nearest_neighbors(fake_features, real_features, device=device)
    d_real, _ = nearest_neighbors(real_features, real_features, exclude_self=True, device=device)
    med_r = float(d_real.median())
    q_r = float(torch.quantile(d_real.double(), quantile))
    return {
        "frac_closer_than_real_median": float((d_fake < med_r).float().mean()),
        f"frac_closer_than_real_p{int(round(quantile * 100)):02d}": float((d_fake < q_r).float().mean()),
        "median_distance_ratio": float(d_fake.median()) / max(med_r, 1e-12),
        "real_nn_median": med_r,
        f"real_nn_p{int(round(quantile * 100)):02d}": q_r,
        "fake_nn_median": float(d_fake.median()),
        "fake_nn_min": float(d_fake.min()),
        "d_fake": d_fake.numpy(),
        "nn_index": nn_idx.numpy(),
    }


def pairs_grid(fakes, reals, *, pairs_per_row: int = 4, pad: int = 2) -> np.ndarray:
    """HWC uint8 image: each fake (left) beside its nearest real (right), pairs in a grid."""
    f = _to_hwc_list(fakes)
    r = _to_hwc_list(reals)
    if len(f) != len(r):
        raise ValueError("need as many reals as fakes")
    if not f:
        raise ValueError("no pairs to draw")
    h = max(a.shape[0] for a in f + r)
    w = max(a.shape[1] for a in f + r)
    n = len(f)
    cols = min(pairs_per_row, n)
    rows = (n + cols - 1) // cols
    pair_w = 2 * w + pad  # fake | gap | real
    gap = 3 * pad  # wider gap between pairs
    H = rows * h + (rows + 1) * pad
    W = cols * pair_w + (cols - 1) * gap + 2 * pad
    canvas = np.full((H, W, 3), 255, dtype=np.uint8)
    for k in range(n):
        rr, cc = divmod(k, cols)
        y = pad + rr * (h + pad)
        x = pad + cc * (pair_w + gap)
        canvas[y : y + f[k].shape[0], x : x + f[k].shape[1]] = f[k]
        canvas[y : y + r[k].shape[0], x + w + pad : x + w + pad + r[k].shape[1]] = r[k]
    return canvas


def save_pairs_grid(fakes, reals, path: str, **kw) -> str:
    from PIL import Image

    Image.fromarray(pairs_grid(fakes, reals, **kw)).save(path)
    return path


def _to_hwc_list(x) -> list[np.ndarray]:
    if torch.is_tensor(x):
        x = x.cpu().numpy()
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError("pairs_grid expects uint8 images")
    if x.ndim != 4:
        raise ValueError("expected (N, C, H, W)")
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    return [a.transpose(1, 2, 0) for a in x]


__all__ = ["memorization_stats", "nearest_neighbors", "pairs_grid", "save_pairs_grid"]
