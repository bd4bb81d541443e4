"""``prepare()``: from a source (and a root folder) to a cached :class:`PreparedData`.

Sources are classes, chosen by the data config's ``source: {_target_: ..., _partial_: true}``:
:class:`ganlab.data.faces.source.Faces` (procedural, no files), :class:`CelebA` (official /
kaggle / torchvision layouts), :class:`Folder` (any image tree), :class:`MnistIdx` (MNIST /
Fashion-MNIST IDX files; :class:`FashionMNIST` and :class:`MNIST` fix the class names), or
:func:`auto` (detected from root). Each is called as ``source(root, opts=..., max_images=...,
seed=..., **its own options)``.

Images are decoded, cropped and resized once into the cache (see :mod:`ganlab.data.cache`);
labels and splits are computed from the annotation files on every call (cheap), so changing
``labels`` or the split fractions never re-decodes anything.

Splits: CelebA's official partition (train/val/test) when its file is present, the official
train/test of IDX data, otherwise a seeded ratio split (``val_fraction``/``test_fraction``).
``max_images`` keeps that many images spread evenly over the natural-order listing (so every
class and split stays represented), deterministically.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ganlab.data import cache as _cache
from ganlab.data import layouts
from ganlab.data.build import chunk_ranges, resolve_workers, run_chunks
from ganlab.data.decode import ChunkResult, ImageOptions, decode_files, transform_array
from ganlab.data.errors import DataLayoutError, layout_error
from ganlab.data.idx import FASHION_MNIST_CLASSES, MNIST_CLASSES, read_idx
from ganlab.data.annotations import (LABEL_MODES, attribute_label_array, check_fractions, class_label_array,
                                coded_splits, evenly_spaced, normalise_labels, ratio_splits)
from ganlab.data.prepared import PreparedData

__all__ = ["CelebA", "DataLayoutError", "FashionMNIST", "Folder", "MNIST", "MnistIdx", "Source", "auto", "prepare"]

log = logging.getLogger("ganlab.data")

_CELEBA_PARTITION = {0: "train", 1: "val", 2: "test"}


@dataclass
class Request:
    """What the caller asked for beyond the images themselves."""

    labels: str | list[str] | None
    label_mode: str
    val_fraction: float
    test_fraction: float
    seed: int


@dataclass
class Annotation:
    labels: np.ndarray | None = None
    label_kind: str | None = None
    class_names: list[str] = field(default_factory=list)
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # how labels/splits were made (fingerprinted)


def _file_sig(path: Path) -> list:
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def seeded_splits(n: int, req: Request) -> tuple[dict, dict]:
    splits = ratio_splits(n, req.val_fraction, req.test_fraction, req.seed)
    return splits, {"split": "ratio", "val_fraction": req.val_fraction,
                    "test_fraction": req.test_fraction, "seed": req.seed}


def no_labels_here(source: str, labels, allowed: str) -> ValueError:
    return ValueError(f"labels={labels!r} is not available for source {source!r}; use {allowed}")


# -- sources ----------------------------------------------------------------------------------
class Source:
    """One data source: what to build (items, jobs, identity) and how to label the rows.

    ``name`` names the cache files and the manifest's ``source``."""

    name = "?"
    layout: str | None = None
    root: Path | None = None

    def __init__(self, opts: ImageOptions, max_images: int | None) -> None:
        self.opts = opts
        self.max_images = max_images

    # identity ------------------------------------------------------------------------------
    def location(self) -> dict:
        return {"root": None if self.root is None else str(self.root)}

    def inputs(self) -> dict:  # what the images depend on besides options (with size/mtime)
        raise NotImplementedError

    def metadata(self) -> dict:  # annotation files the labels/splits depend on
        return {}

    def entry(self, cache_dir: Path) -> _cache.CacheEntry:
        slot = _cache.digest({"source": self.name, "layout": self.layout, **self.location(),
                              "options": self.opts.as_dict(), "max_images": self.max_images})
        key = _cache.digest({"slot": slot, "format": _cache.CACHE_FORMAT, "inputs": self.inputs()})
        return _cache.CacheEntry(cache_dir, self.name, slot, key)

    # building ------------------------------------------------------------------------------
    n_items = 0

    def jobs(self, workers: int) -> tuple[list, object]:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        return str(index)

    def workers(self, requested: int | None) -> int:
        return resolve_workers(requested, self.n_items)

    def manifest(self) -> dict:
        return {"source": self.name, "layout": self.layout, **self.location(),
                "options": self.opts.as_dict(), "max_images": self.max_images}

    # labelling -----------------------------------------------------------------------------
    def annotate(self, kept: np.ndarray, loaded: _cache.Loaded, req: Request) -> Annotation:
        raise NotImplementedError


class _FileSource(Source):
    base: Path
    files: list[layouts.FileEntry]  # the selected files
    listed = 0
    ignored = 0
    missing: list[str]  # dangling symlinks / files gone while listing (skipped, counted in the manifest)

    def _select(self, found: list[layouts.FileEntry]) -> None:
        self.listed = len(found)
        self.files = [found[i] for i in evenly_spaced(len(found), self.max_images)]
        self.n_items = len(self.files)

    def inputs(self) -> dict:
        return {"base": str(self.base), "files": [f.signature() for f in self.files]}

    def jobs(self, workers: int):
        paths = [str(self.base / f.rel) for f in self.files]
        return [(s, paths[s:e], self.opts) for s, e in chunk_ranges(len(paths), workers)], decode_files

    def describe(self, index: int) -> str:
        return self.files[index].rel

    def manifest(self) -> dict:
        return {**super().manifest(), "base": str(self.base), "files": [f.signature() for f in self.files],
                "listed": self.listed, "ignored_non_image": self.ignored,
                "skipped_missing": len(self.missing), "missing_examples": self.missing[:20]}

    def kept_rels(self, kept: np.ndarray) -> list[str]:
        return [self.files[i].rel for i in kept]


class Folder(_FileSource):
    """Any folder of images, searched recursively; ``labels='class'``: first-level subfolders."""

    name = "folder"

    def __init__(self, root: Path | None, *, opts: ImageOptions, max_images: int | None, seed: int = 0) -> None:
        super().__init__(opts, max_images)
        self.missing = []
        root = _root_path(root)
        layouts._require_dir(root, celeba=False)
        self.root = self.base = root
        found, self.ignored = layouts.list_images(root, recursive=True, missing=self.missing)
        if not found:
            empty = not any(not p.name.startswith(".") for p in root.iterdir())
            raise layout_error("data root is an empty folder" if empty else "no image files found", root)
        self._select(found)

    def annotate(self, kept, loaded, req):
        splits, info = seeded_splits(len(kept), req)
        if req.labels is None:
            return Annotation(splits=splits, info=info)
        if req.labels != "class":
            raise no_labels_here(self.name, req.labels, "labels='class' (first-level subfolders) or None")
        rels = self.kept_rels(kept)
        loose = [r for r in rels if "/" not in r]
        if loose:
            raise layout_error(
                f"labels='class' needs every image inside a first-level class subfolder; "
                f"{len(loose)} image(s) lie directly in the root (e.g. {loose[0]})", self.root)
        y, kind, names = class_label_array([r.split("/", 1)[0] for r in rels])
        return Annotation(y, kind, names, splits, {**info, "labels": "class"})


class CelebA(_FileSource):
    """CelebA images + attributes (+ partition, identities); ``layout``: auto | official | kaggle | torchvision."""

    name = "celeba"

    def __init__(self, root: Path | None, *, opts: ImageOptions, max_images: int | None, seed: int = 0,
                 layout: str = "auto") -> None:
        super().__init__(opts, max_images)
        self.missing = []
        self.root = root = _root_path(root)
        self.cf = layouts.celeba_files(root, layout)
        self.layout, self.base = self.cf.layout, self.cf.images
        found, self.ignored = layouts.list_images(self.base, recursive=False, missing=self.missing)
        if not found:
            raise layout_error("the CelebA image folder holds no images", self.base, celeba=True)
        names = [f.rel for f in found]
        self.attributes = layouts.read_attributes(self.cf.attributes)
        layouts.check_same_images(self.cf.attributes, self.attributes.rows, self.base, names)
        self.partition = None
        if self.cf.partition is not None:
            self.partition = layouts.read_name_table(self.cf.partition)
            layouts.check_same_images(self.cf.partition, self.partition, self.base, names)
        self._names = names
        self._select(found)

    def metadata(self) -> dict:
        return {"annotations": [_file_sig(p) for p in self.cf.metadata()]}

    def _identities(self, rels: list[str]) -> list[str]:
        if self.cf.identity is None:
            raise layout_error("labels='identity' needs identity_CelebA.txt next to the attributes",
                               self.cf.base, celeba=True)
        table = layouts.read_name_table(self.cf.identity)
        layouts.check_same_images(self.cf.identity, table, self.base, self._names)
        return [str(table[r]) for r in rels]

    def annotate(self, kept, loaded, req):
        rels = self.kept_rels(kept)
        if self.partition is not None:
            splits = coded_splits(np.asarray([self.partition[r] for r in rels]), _CELEBA_PARTITION)
            info = {"split": "official"}
        else:
            splits, info = seeded_splits(len(rels), req)
        if req.labels is None:
            return Annotation(splits=splits, info=info)
        if req.labels == "identity":
            y, kind, names = class_label_array(self._identities(rels))
            return Annotation(y, kind, names, splits, {**info, "labels": "identity"})
        if req.labels == "class":
            raise no_labels_here(self.name, req.labels, "a list of attribute names or 'identity'")
        rows = np.asarray([self.attributes.index[r] for r in rels], dtype=np.int64)
        values = self.attributes.values[rows] if len(rows) else np.zeros((0, len(self.attributes.names)))
        y, kind, names = attribute_label_array(values, self.attributes.names, req.labels, req.label_mode)
        return Annotation(y, kind, names, splits, {**info, "labels": names, "label_mode": kind})


def _idx_chunk(job) -> ChunkResult:
    start, batch, opts = job
    out = transform_array(batch, opts)
    return ChunkResult(start, out, np.ones(len(batch), dtype=bool), {}, {})


class MnistIdx(Source):
    """MNIST-style IDX files (train/test images + labels, .gz or raw); class names guessed from the path."""

    name = "mnist_idx"
    classes: list[str] | None = None  # fixed by the subclasses

    def __init__(self, root: Path | None, *, opts: ImageOptions, max_images: int | None, seed: int = 0) -> None:
        super().__init__(opts, max_images)
        self.missing = []
        root = _root_path(root)
        layouts._require_dir(root, celeba=False)
        self.root = root
        pairs = layouts.find_idx(root)
        if pairs is None:
            raise layout_error("no MNIST-style IDX files (train-images-idx3-ubyte[.gz] + labels)", root)
        self.pairs = pairs
        self.targets = {s: read_idx(lab).astype(np.int64).reshape(-1) for s, (_img, lab) in pairs.items()}
        self.origin = np.concatenate([np.full(len(t), code) for code, t in enumerate(self.targets.values())])
        self.all_targets = np.concatenate(list(self.targets.values()))
        self.selected = evenly_spaced(len(self.all_targets), max_images)
        self.n_items = len(self.selected)
        self.class_names = self.classes or self._guess_names()

    def _guess_names(self) -> list[str]:
        path = str(self.pairs["train"][0]).casefold()
        return FASHION_MNIST_CLASSES if "fashion" in path else MNIST_CLASSES

    def inputs(self) -> dict:
        return {"files": [_file_sig(p) for pair in self.pairs.values() for p in pair]}

    def manifest(self) -> dict:
        return {**super().manifest(), "files": self.inputs()["files"], "class_names": self.class_names}

    def _images(self) -> np.ndarray:
        arrays = []
        for split, (img_path, _lab) in self.pairs.items():
            a = read_idx(img_path)
            if a.ndim != 3 or a.dtype != np.uint8 or len(a) != len(self.targets[split]):
                raise layout_error(f"IDX images do not match their labels ({a.shape} vs "
                                   f"{len(self.targets[split])} labels)", img_path)
            arrays.append(a)
        return np.concatenate(arrays)[self.selected][:, None]

    def workers(self, requested: int | None) -> int:
        r = int(self.opts.resolution)
        native = r == 28 and self.opts.crop is None
        return 0 if native else super().workers(requested)  # nothing to transform: no pool

    def jobs(self, workers: int):
        images = self._images()
        size = 4096 if workers == 0 else max(256, len(images) // (workers * 4) + 1)
        return [(s, images[s : s + size], self.opts) for s in range(0, len(images), size)], _idx_chunk

    def annotate(self, kept, loaded, req):
        rows = self.selected[kept]
        names = list(self.pairs)
        splits = coded_splits(self.origin[rows], dict(enumerate(names)))
        info = {"split": "official"}
        if req.labels is None:
            return Annotation(splits=splits, info=info)
        if req.labels != "class":
            raise no_labels_here(self.name, req.labels, "labels='class' or None")
        y = self.all_targets[rows].astype(np.int64)
        return Annotation(y, "class", list(self.class_names), splits, {**info, "labels": "class"})


class FashionMNIST(MnistIdx):
    """Fashion-MNIST's IDX files, with its 10 clothing class names."""

    classes = FASHION_MNIST_CLASSES


class MNIST(MnistIdx):
    """MNIST's IDX files, with the digit class names."""

    classes = MNIST_CLASSES


# -- resolving the source -------------------------------------------------------------------
def _root_path(root) -> Path | None:
    if root is None or (isinstance(root, str) and root.strip() in ("", "null", "None")):
        return None
    return Path(os.path.expandvars(os.fspath(root))).expanduser().resolve()


def auto(root, *, opts: ImageOptions, max_images: int | None, seed: int = 0, layout: str = "auto") -> Source:
    """The source that ``root`` holds: CelebA (any layout), IDX files, or else a folder of images."""
    if layout in layouts.CELEBA_LAYOUTS:
        return CelebA(root, opts=opts, max_images=max_images, layout=layout)
    kind, detected = layouts.detect(_root_path(root))
    make = {"celeba": CelebA, "folder": Folder, "mnist_idx": MnistIdx}[kind]
    kwargs = {"layout": detected or layout} if make is CelebA else {}
    return make(root, opts=opts, max_images=max_images, seed=seed, **kwargs)


def _check_args(label_mode: str, val_fraction: float, test_fraction: float, max_images) -> None:
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
    check_fractions(val_fraction, test_fraction)
    if max_images is not None and int(max_images) < 1:
        raise ValueError(f"max_images must be None or >= 1, got {max_images}")


# -- building -----------------------------------------------------------------------------------
def _summarise(failures: dict[int, str]) -> str:
    kinds = Counter(r.split(":", 1)[0] for r in failures.values())
    return ", ".join(f"{n} {k}" for k, n in kinds.most_common())


def _builder(src: Source, workers: int | None, progress: bool):
    def build(tmp_images: Path):
        t0 = time.perf_counter()
        n_workers = src.workers(workers)
        jobs, worker = src.jobs(n_workers)
        r = int(src.opts.resolution)
        outcome = run_chunks(
            jobs, worker, out_path=tmp_images, n_items=src.n_items,
            item_shape=(src.opts.channels, r, r), workers=n_workers, progress=progress,
            description=f"ganlab: caching {src.name} {r}px",
        )
        where = src.root if src.root is not None else src.name
        if outcome.count == 0:
            raise layout_error(f"none of the {src.n_items} image file(s) could be decoded "
                               f"({_summarise(outcome.failures)})", where)
        skipped = [{"index": i, "file": src.describe(i), "reason": outcome.failures[i]}
                   for i in sorted(outcome.failures)]
        manifest = {
            **src.manifest(),
            "counts": {"selected": src.n_items, "images": outcome.count, "skipped": len(skipped)},
            "skipped": skipped,
            "shape": [outcome.count, src.opts.channels, r, r],
            "dtype": "uint8",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "build_seconds": round(time.perf_counter() - t0, 3),
            "workers": n_workers,
        }
        if skipped:
            log.warning("ganlab.data: skipped %d of %d files under %s (%s); see 'skipped' in the manifest",
                        len(skipped), src.n_items, where, _summarise(outcome.failures))
        return manifest, outcome.extras

    return build


def _kept_rows(manifest: dict) -> np.ndarray:
    skipped = np.asarray([s["index"] for s in manifest["skipped"]], dtype=np.int64)
    return np.setdiff1d(np.arange(manifest["counts"]["selected"], dtype=np.int64), skipped)


def with_all_split(splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add ``"all"``: every row of every split, sorted (train on / score against the whole set)."""
    if "all" in splits or not splits:
        return dict(splits)
    return {**splits, "all": np.unique(np.concatenate(list(splits.values()))).astype(np.int64)}


# -- the entry point ------------------------------------------------------------------------------
def prepare(
    source: Callable[..., Source] = auto,
    root: str | os.PathLike | None = None,
    *,
    resolution: int = 64,
    channels: int = 3,
    crop: int | float | None = None,
    resize_filter: str = "bilinear",
    max_images: int | None = None,
    labels=None,
    label_mode: str = "multi_hot",
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    **source_options: Any,
) -> PreparedData:
    """Decode (once, cached) and label a data source; see the module docstring.

    ``source``: a source class or factory (:class:`CelebA`, :class:`Folder`, :class:`MnistIdx`,
    :class:`ganlab.data.faces.source.Faces`, :func:`auto`, or a ``functools.partial`` of one, as
    Hydra builds it); ``source_options`` go to it (``layout=`` for CelebA, ``num_images=`` for faces).
    ``labels``: ``None``; a list of attribute names (CelebA, faces); ``"class"`` (folder
    subfolders, IDX classes); ``"identity"`` (CelebA with identity_CelebA.txt).
    ``label_mode`` (attribute lists only): ``"multi_hot"`` float32 (N, K) or ``"class"`` int64
    index with bit ``i`` = attribute ``i``. ``seed`` seeds the procedural faces and ratio splits.
    Raises :class:`DataLayoutError` for unusable roots.
    """
    if not callable(source):
        raise TypeError(f"source must be a source class or factory (e.g. ganlab.data.sources.CelebA), got {source!r}; "
                        "in a data config: source: {_target_: ganlab.data.sources.CelebA, _partial_: true}")
    opts = ImageOptions(resolution, channels, crop, resize_filter)
    _check_args(label_mode, val_fraction, test_fraction, max_images)
    req = Request(normalise_labels(labels), label_mode, float(val_fraction), float(test_fraction), int(seed))
    max_images = None if max_images is None else int(max_images)
    src = source(root, opts=opts, max_images=max_images, seed=int(seed), **source_options)
    folder = Path(cache_dir).expanduser() if cache_dir else _cache.default_cache_dir()
    entry = src.entry(folder)
    loaded = _cache.get_or_build(entry, _builder(src, num_workers, progress))
    ann = src.annotate(_kept_rows(loaded.manifest), loaded, req)
    ann.splits = with_all_split(ann.splits)
    fingerprint = _cache.digest({"images": entry.key, "metadata": src.metadata(), "prepared": ann.info})
    manifest = {
        **loaded.manifest,
        "fingerprint": fingerprint,
        "cache": {"images": str(entry.images), "manifest": str(entry.manifest), "built": loaded.built},
        "prepared": {**ann.info, "class_names": ann.class_names,
                     "splits": {k: int(len(v)) for k, v in ann.splits.items()}},
    }
    return PreparedData(loaded.images, ann.labels, ann.label_kind, ann.class_names, ann.splits,
                        fingerprint, manifest)
