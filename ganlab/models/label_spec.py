"""The model's label spec against the data's labels: ``num_classes`` taken from the data when the
config leaves it ``null``, and one :class:`LabelSpecError` (saying what to set) when a configured
spec does not fit."""

from __future__ import annotations

from typing import Any

from torch import nn

from ganlab.labels import LabelError


class LabelSpecError(LabelError):
    """The model's label spec does not fit the data or the request."""


NO_LABELS = ("the data has no labels: set data.labels=class (Fashion-MNIST, MNIST, a folder of class subfolders) "
             "or data.labels=[Male,Smiling,...] (CelebA attributes, procedural faces)")


def _hint(dm) -> str:
    if not dm.label_kind:
        return ""
    return f"model.generator.num_classes={dm.num_classes} model.generator.label_kind={dm.label_kind}"


def fill_num_classes(model_config: Any, dm) -> None:
    """``model.generator.num_classes: null`` -> the data's number of labels (in place; the
    discriminator follows it by interpolation in ``conf/model/cgan*.yaml``)."""
    generator = model_config.get("generator") if hasattr(model_config, "get") else None
    if generator is not None and "num_classes" in generator and generator["num_classes"] is None:
        if not dm.label_kind:
            raise LabelSpecError(f"the model is conditional (num_classes: null = from the data) but {NO_LABELS}")
        generator["num_classes"] = int(dm.num_classes)


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
        raise LabelSpecError(f"the model is conditional (num_classes={k}) but {NO_LABELS}")
    kind = getattr(model, "label_kind", None)
    if k != dm.num_classes or kind != dm.label_kind:
        raise LabelSpecError(
            f"the model expects {k} labels of kind {kind!r} but the data has {dm.num_classes} of kind "
            f"{dm.label_kind!r} ({', '.join(dm.class_names[:12])}{' ...' if dm.num_classes > 12 else ''}); "
            f"set {_hint(dm)} (or num_classes: null to take it from the data)")


__all__ = ["LabelSpecError", "check_label_spec", "fill_num_classes"]
