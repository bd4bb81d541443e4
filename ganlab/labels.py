"""Labels of a conditional GAN, in one place: what a trained model's labels are (:class:`LabelInfo`),
label names -> values (:func:`class_index`, :func:`attribute_vector`, :func:`combination_name`) and
values -> the label tensors G takes (``*_tensor``). Every failure is one :class:`LabelError` naming
what is known.

Two kinds (``label_kind``): ``"class"`` - one class index per image, a ``long`` tensor ``(n,)``;
``"multi_hot"`` - one 0/1 vector over the attributes per image, a ``float32`` tensor ``(n, K)``.
Functions that return numpy arrays (label tables of a data set) are in :mod:`ganlab.data.annotations`
and end in ``_array``; everything here that returns a torch tensor ends in ``_tensor``. Which labels
a grid or an evaluation draws (the plan of seed ``s``) is :mod:`ganlab.sampling`'s.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

CLASS, MULTI_HOT = "class", "multi_hot"
LABEL_KINDS = (MULTI_HOT, CLASS)


class LabelError(ValueError):
    """A label name, value or request that does not fit the model's labels: one clear line."""


@dataclass
class LabelInfo:
    """What a trained model's labels are: how many, which kind, their names and how often each
    occurred in the training data (``counts``: class name / attribute combination -> images)."""

    num_classes: int = 0
    kind: str | None = None
    class_names: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def is_class(self) -> bool:
        return self.conditional and self.kind == CLASS

    @property
    def is_multi_hot(self) -> bool:
        return self.conditional and self.kind == MULTI_HOT

    @classmethod
    def of(cls, model: Any, stored: Mapping[str, Any] | None = None) -> "LabelInfo":
        """The model's labels (``num_classes``, ``label_kind``) named by ``stored``, the data state a
        checkpoint keeps (:func:`ganlab.checkpoints.stored_data_state`: ``class_names``,
        ``label_counts``); a checkpoint without names gets ``class_0`` ... (with a warning)."""
        stored = dict(stored or {})
        k = int(getattr(model, "num_classes", 0) or 0)
        names = list(stored.get("class_names") or [])
        if k and len(names) != k:
            warnings.warn(f"the checkpoint stores no class names for its {k} labels; using class_0 ... "
                          f"class_{k - 1}", stacklevel=2)
            names = [f"class_{i}" for i in range(k)]
        kind = getattr(model, "label_kind", None) if k else None
        return cls(k, kind, names if k else [], dict(stored.get("label_counts") or {}))

    def names(self) -> list[str]:
        """The class / attribute names (``"0"``, ``"1"`` ... when none are known)."""
        return self.class_names or [str(i) for i in range(self.num_classes)]


# -- names -> values ---------------------------------------------------------------------------------------
def class_index(name: Any, class_names: Sequence[str]) -> int:
    """A class given by index, exact name, case-folded name or folder name -> its index."""
    from ganlab.utils.files import folder_names

    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if 0 <= int(name) < len(class_names):
            return int(name)
        raise LabelError(f"class index {name} out of range 0..{len(class_names) - 1}")
    s = str(name)
    if s in class_names:
        return list(class_names).index(s)
    for pool in ([n.casefold() for n in class_names], [f.casefold() for f in folder_names(class_names)]):
        if s.casefold() in pool:
            return pool.index(s.casefold())
    raise LabelError(f"unknown class {s!r}; the checkpoint's classes: {', '.join(class_names)}")


def attribute_vector(combo: Any, attr_names: Sequence[str]) -> list[float]:
    """An attribute combination (``["Eyeglasses", "Male"]``, ``"Eyeglasses+Male"``, ``[]`` / ``"none"``)
    -> its 0/1 vector over ``attr_names`` (listed attributes on, all others off)."""
    if isinstance(combo, str):
        combo = [] if combo.strip().lower() in ("", "none") else [c for c in combo.split("+") if c]
    if not isinstance(combo, (list, tuple)):
        raise LabelError(f"each attributes entry must be a list of attribute names, got {combo!r}")
    vec = [0.0] * len(attr_names)
    folded = [a.casefold() for a in attr_names]
    for a in combo:
        if str(a).casefold() not in folded:
            raise LabelError(f"unknown attribute {a!r}; the checkpoint's attributes: {', '.join(attr_names)}")
        vec[folded.index(str(a).casefold())] = 1.0
    return vec


def combination_name(vector: Sequence[float], names: Sequence[str]) -> str:
    """``[1, 0, 1]`` with names ``[Eyeglasses, Male, Smiling]`` -> ``"Eyeglasses+Smiling"``; all 0 -> ``"none"``."""
    on = [n for v, n in zip(vector, names) if float(v) > 0.5]
    return "+".join(on) if on else "none"


# -- values -> tensors -------------------------------------------------------------------------------------
def class_tensor(indices: Sequence[int]) -> torch.Tensor:
    """``long (n,)`` class labels."""
    return torch.tensor([int(i) for i in indices], dtype=torch.long)


def attribute_tensor(vectors: Sequence[Sequence[float]]) -> torch.Tensor:
    """``float32 (n, K)`` multi-hot labels from attribute vectors (one per image)."""
    return torch.tensor([list(map(float, v)) for v in vectors], dtype=torch.float32)


def label_tensor(kind: str | None, values: Sequence) -> torch.Tensor | None:
    """One label value per image (class indices or attribute vectors) -> the tensor of ``kind``;
    ``None`` for an unconditional model (``kind`` None)."""
    if kind is None:
        return None
    return class_tensor(values) if kind == CLASS else attribute_tensor(values)


def constant_label_tensor(c: int, n: int, num_classes: int, kind: str | None) -> torch.Tensor:
    """``n`` labels of class ``c`` (class kind) or of attribute ``c`` alone (multi-hot)."""
    if kind == MULTI_HOT:
        rows = torch.zeros(n, num_classes)
        rows[:, c] = 1.0
        return rows
    return torch.full((n,), int(c), dtype=torch.long)


def request_tensor(info: LabelInfo, request: Any, n: int) -> torch.Tensor:
    """The labels of ``n`` images asked for by name: a class (index or name) or an attribute
    combination (``"Eyeglasses+Male"``, ``["Eyeglasses", "Male"]``, ``[]`` = none) for all ``n``, a list
    of ``n`` of those (one per image), or a tensor of ``n`` labels (used as is)."""
    if not info.conditional:
        raise LabelError("the model is unconditional (trained without labels): it takes no labels")
    if isinstance(request, torch.Tensor):
        values = request
    elif info.is_class:
        one = isinstance(request, (str, int, np.integer))
        values = [class_index(request, info.names())] * n if one else [class_index(c, info.names()) for c in request]
    else:
        one = isinstance(request, str) or not request or all(isinstance(a, str) for a in request)
        names = info.names()
        values = [attribute_vector(request, names)] * n if one else [attribute_vector(c, names) for c in request]
    if len(values) != n:
        raise LabelError(f"{len(values)} labels for {n} images")
    return values if isinstance(values, torch.Tensor) else label_tensor(info.kind, values)


__all__ = ["CLASS", "LABEL_KINDS", "LabelError", "LabelInfo", "MULTI_HOT", "attribute_tensor", "attribute_vector",
           "class_index", "class_tensor", "combination_name", "constant_label_tensor", "label_tensor",
           "request_tensor"]
