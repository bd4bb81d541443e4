"""Conditional-GAN helpers shared by training, sample grids, ``ganlab.generate`` and metrics.

* :func:`check_label_spec` - the model's ``num_classes``/``label_kind`` must match the data's
  labels (checked by ``ganlab.train`` before the first step, with a message saying what to set);
* :func:`label_metadata` / :func:`checkpoint_label_info` - class names, label kind and label
  counts travel in every checkpoint as ``checkpoint["ganlab_data"]``;
* ``soft_class_labels`` / ``interpolation_labels`` live in :mod:`ganlab.sampling` (the sampling
  layer) and stay importable from here;
* :func:`folder_name` / :func:`combination_name` - file-system-safe names for class folders
  ("T-shirt/top" -> "T-shirt_top") and attribute combinations ("Eyeglasses+Male", "none").
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Sequence

import numpy as np
from torch import nn

from ganlab.sampling import interpolation_labels, soft_class_labels  # noqa: F401  (moved; kept importable)


class LabelSpecError(ValueError):
    """The model's label spec does not fit the data or the request."""


# -- training ------------------------------------------------------------------------------------
def _hint(dm) -> str:
    if not dm.label_kind:
        return ""
    return f"model.generator.num_classes={dm.num_classes} model.generator.label_kind={dm.label_kind}"


def check_label_spec(model: nn.Module, dm) -> None:
    """Raise :class:`LabelSpecError` when a conditional model and the data's labels disagree."""
    k = int(getattr(model, "num_classes", 0) or 0)
    d = getattr(model, "discriminator", None)
    dk = int(getattr(d, "num_classes", 0) or 0)
    if k != dk and d is not None and hasattr(d, "num_classes"):
        raise LabelSpecError(f"generator num_classes={k} but discriminator num_classes={dk}; set both "
                             "(model/cgan.yaml makes the discriminator follow model.generator.num_classes)")
    if not k:
        return  # unconditional: labels of the data (if any) are ignored
    if not dm.label_kind:
        raise LabelSpecError(
            f"the model is conditional (num_classes={k}) but the data has no labels: set data.labels=class "
            "(Fashion-MNIST, MNIST, a folder of class subfolders) or data.labels=[Male,Smiling,...] "
            "(CelebA attributes, procedural faces)")
    kind = getattr(model, "label_kind", None)
    if k != dm.num_classes or kind != dm.label_kind:
        raise LabelSpecError(
            f"the model expects {k} labels of kind {kind!r} but the data has {dm.num_classes} of kind "
            f"{dm.label_kind!r} ({', '.join(dm.class_names[:12])}{' ...' if dm.num_classes > 12 else ''}); "
            f"set {_hint(dm)}")


def combination_name(vector: Sequence[float], names: Sequence[str]) -> str:
    """``[1, 0, 1]`` with names ``[Eyeglasses, Male, Smiling]`` -> ``"Eyeglasses+Smiling"``; all 0 -> ``"none"``."""
    on = [n for v, n in zip(vector, names) if float(v) > 0.5]
    return "+".join(on) if on else "none"


def label_metadata(dm) -> dict[str, Any]:
    """What a checkpoint needs to name and balance generated data (plain Python types only)."""
    kind = dm.label_kind
    meta: dict[str, Any] = {"class_names": list(dm.class_names) if kind else [], "label_kind": kind,
                            "num_classes": int(dm.num_classes), "label_counts": {},
                            "fingerprint": getattr(dm, "fingerprint", None),
                            "split": dict(getattr(dm, "hparams", None) or {}).get("split")}
    labels = dm.split_labels() if kind else None
    if labels is not None and kind == "class":
        counts = np.bincount(np.asarray(labels).astype(np.int64), minlength=dm.num_classes)
        meta["label_counts"] = {n: int(c) for n, c in zip(dm.class_names, counts)}
    elif labels is not None:  # multi-hot: counts of each attribute combination seen in the data
        rows, counts = np.unique((np.asarray(labels) > 0.5).astype(np.int8), axis=0, return_counts=True)
        meta["label_counts"] = {combination_name(r, dm.class_names): int(c) for r, c in zip(rows, counts)}
    return meta


def checkpoint_label_info(ckpt: dict, model: nn.Module | None = None) -> dict[str, Any]:
    """Label metadata of a loaded checkpoint dict; falls back to ``class_0``... names (with a
    warning) for checkpoints written before class names were stored."""
    meta = dict(ckpt.get("ganlab_data") or {})
    k = int(getattr(model, "num_classes", 0) or 0) if model is not None else int(meta.get("num_classes") or 0)
    if k and len(meta.get("class_names") or []) != k:
        warnings.warn(f"the checkpoint stores no class names for its {k} labels; using class_0 ... class_{k - 1}",
                      stacklevel=2)
        meta["class_names"] = [f"class_{i}" for i in range(k)]
    if model is not None:
        meta["num_classes"] = k
        meta["label_kind"] = getattr(model, "label_kind", None)
    meta.setdefault("class_names", [])
    meta.setdefault("label_counts", {})
    return meta


# -- file-system names -----------------------------------------------------------------------------
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def folder_name(name: str) -> str:
    """A class name as a folder name: path separators and characters Windows forbids -> ``_``."""
    safe = _UNSAFE.sub("_", str(name)).strip().strip(".")
    return safe or "_"


def folder_names(names: Sequence[str]) -> list[str]:
    """:func:`folder_name` of each, made unique (``name``, ``name_2`` ...) and case-insensitively distinct."""
    out: list[str] = []
    seen: set[str] = set()
    for n in names:
        base = cand = folder_name(n)
        i = 2
        while cand.casefold() in seen:
            cand = f"{base}_{i}"
            i += 1
        seen.add(cand.casefold())
        out.append(cand)
    return out


__all__ = ["LabelSpecError", "check_label_spec", "checkpoint_label_info", "combination_name", "folder_name",
           "folder_names", "interpolation_labels", "label_metadata", "soft_class_labels"]
