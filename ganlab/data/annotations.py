"""A data set's annotations -> label arrays and splits: attribute selection, combined class indices,
seeded ratio splits, and the label metadata a checkpoint carries (class names, kind, counts).
Everything here returns numpy arrays (``*_array``); label names and the tensors G takes are
:mod:`ganlab.labels`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ganlab.labels import CLASS, LABEL_KINDS, MULTI_HOT, combination_name

__all__ = [
    "LABEL_MODES",
    "normalise_labels",
    "attribute_label_array",
    "class_label_array",
    "ratio_splits",
    "coded_splits",
    "evenly_spaced",
    "label_metadata",
]

LABEL_MODES = LABEL_KINDS  # data.label_mode's values: how attributes become labels = the label kind
MAX_COMBINED_ATTRIBUTES = 12  # 2**12 classes


def normalise_labels(labels) -> str | list[str] | None:
    """``None``, ``"class"``/``"identity"``, or a list of attribute names (a bare name -> [name])."""
    if labels is None:
        return None
    if isinstance(labels, str):
        if labels.strip().lower() in ("", "none", "null"):
            return None
        if labels in ("class", "identity"):
            return labels
        return [labels]
    if isinstance(labels, Iterable):
        names = [str(n) for n in labels]
        return names or None
    raise ValueError(f"labels must be None, 'class', or a list of attribute names, got {labels!r}")


def _column(all_names: list[str], wanted: str) -> int:
    if wanted in all_names:
        return all_names.index(wanted)
    folded = [n.casefold() for n in all_names]
    if wanted.casefold() in folded:
        return folded.index(wanted.casefold())
    raise ValueError(f"unknown attribute {wanted!r}; available: {', '.join(all_names)}")


def attribute_label_array(values: np.ndarray, all_names: list[str], wanted: list[str], mode: str):
    """Select attributes from a 0/1 table: ``(labels, kind, class_names)``.

    ``multi_hot``: float32 ``(N, K)``, names = the attributes.
    ``class``: int64 ``(N,)`` with bit ``i`` = attribute ``i``; names like ``"Male=1,Smiling=0"``.
    """
    cols = [_column(list(all_names), w) for w in wanted]
    if len(set(cols)) != len(cols):
        raise ValueError(f"attribute listed twice in labels={wanted}")
    names = [all_names[c] for c in cols]
    sel = (np.asarray(values)[:, cols] > 0).astype(np.int64)
    if mode == MULTI_HOT:
        return sel.astype(np.float32), MULTI_HOT, names
    if len(cols) > MAX_COMBINED_ATTRIBUTES:
        raise ValueError(f"label_mode='class' combines at most {MAX_COMBINED_ATTRIBUTES} attributes (2^k classes)")
    index = (sel << np.arange(len(cols), dtype=np.int64)).sum(axis=1)
    classes = [",".join(f"{n}={(c >> i) & 1}" for i, n in enumerate(names)) for c in range(2 ** len(cols))]
    return index.astype(np.int64), CLASS, classes


def class_label_array(keys: list, class_names: list[str] | None = None):
    """Class index per row from a per-row key; names sorted naturally unless given."""
    from ganlab.data.layouts import natural_sorted

    names = list(class_names) if class_names is not None else natural_sorted({str(k) for k in keys})
    lookup = {n: i for i, n in enumerate(names)}
    return np.asarray([lookup[str(k)] for k in keys], dtype=np.int64), CLASS, names


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(f) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    if float(val_fraction) + float(test_fraction) >= 1.0:
        raise ValueError("val_fraction + test_fraction must leave some training data")


def ratio_splits(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Seeded random split of ``n`` rows; each split's indices sorted; empty splits left out."""
    check_fractions(val_fraction, test_fraction)
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    parts = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}
    return {k: np.sort(v).astype(np.int64) for k, v in parts.items() if len(v)}


def coded_splits(codes: np.ndarray, names: dict[int, str]) -> dict[str, np.ndarray]:
    """Splits from a per-row code (e.g. CelebA's 0/1/2 partition); empty splits left out."""
    out = {}
    for code, name in names.items():
        idx = np.flatnonzero(np.asarray(codes) == code).astype(np.int64)
        if len(idx):
            out[name] = idx
    return out


def evenly_spaced(n: int, max_items: int | None) -> np.ndarray:
    """``max_items`` indices spread evenly over ``range(n)`` (all of them if ``None`` or enough)."""
    if max_items is None or max_items >= n:
        return np.arange(n, dtype=np.int64)
    return (np.arange(max_items, dtype=np.int64) * n) // max_items


def label_metadata(dm) -> dict[str, Any]:
    """What a checkpoint needs to name and balance generated data (plain Python types only)."""
    kind = dm.label_kind
    meta: dict[str, Any] = {"class_names": list(dm.class_names) if kind else [], "label_kind": kind,
                            "num_classes": int(dm.num_classes), "label_counts": {},
                            "fingerprint": getattr(dm, "fingerprint", None),
                            "split": dict(getattr(dm, "hparams", None) or {}).get("split")}
    labels = dm.split_labels() if kind else None
    if labels is not None and kind == CLASS:
        counts = np.bincount(np.asarray(labels).astype(np.int64), minlength=dm.num_classes)
        meta["label_counts"] = {n: int(c) for n, c in zip(dm.class_names, counts)}
    elif labels is not None:  # multi-hot: counts of each attribute combination seen in the data
        rows, counts = np.unique((np.asarray(labels) > 0.5).astype(np.int8), axis=0, return_counts=True)
        meta["label_counts"] = {combination_name(r, dm.class_names): int(c) for r, c in zip(rows, counts)}
    return meta
