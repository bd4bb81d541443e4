"""Conditional-GAN helpers shared by sample grids, ``ganlab.generate`` and metrics.

The label-spec check and checkpoint label info now live in :mod:`ganlab.models.labels`, the label
metadata in :mod:`ganlab.data.labels`; they are re-exported here until the sampling half of this
module moves to :mod:`ganlab.sampling`.

* :func:`soft_class_labels` - lets a class-conditional network take soft one-hot labels
  ``(B, K)``, i.e. a linear interpolation of its class embeddings (class-interpolation grids);
* :func:`folder_name` / :func:`combination_name` - file-system-safe names for class folders
  ("T-shirt/top" -> "T-shirt_top") and attribute combinations ("Eyeglasses+Male", "none").
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, Sequence

import torch
from torch import nn

from ganlab.data.labels import combination_name, label_metadata  # noqa: F401  (re-exported)
from ganlab.models.labels import LabelSpecError, check_label_spec, checkpoint_label_info  # noqa: F401
from ganlab.models.networks.conditioning import LabelEmbedding


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


# -- soft labels (interpolation between class embeddings) -----------------------------------------------
@contextlib.contextmanager
def soft_class_labels(module: nn.Module) -> Iterator[None]:
    """Inside the block, every class-kind :class:`LabelEmbedding` of ``module`` also accepts float
    ``(B, K)`` rows and returns ``rows @ embedding_table``: a one-hot row gives exactly the class's
    embedding, ``(1 - t) * onehot_a + t * onehot_b`` the linear interpolation of two embeddings
    (for ``cbn`` generators: of the per-layer scales and shifts). Integer labels work as before."""
    patched: list[LabelEmbedding] = []
    for m in module.modules():
        if isinstance(m, LabelEmbedding) and m.label_kind == "class":
            def forward(labels: torch.Tensor, _m: LabelEmbedding = m) -> torch.Tensor:
                if labels.is_floating_point() and labels.dim() == 2:
                    return labels.to(_m.embed.weight.dtype) @ _m.embed.weight
                return LabelEmbedding.forward(_m, labels)

            m.forward = forward  # instance attribute shadows the class method
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def interpolation_labels(num_classes: int, label_kind: str | None, steps: int,
                         max_rows: int = 10) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Soft labels ``(rows * steps, K)`` for a class-interpolation grid and the (from, to) of each
    row as indices/strings. Class labels: row r goes from class r to class r+1 (wrapping);
    multi-hot: row r goes from "no attribute" to attribute r alone."""
    k = int(num_classes)
    t = torch.linspace(0.0, 1.0, steps)[:, None]
    rows, ends = [], []
    for r in range(min(k, max_rows)):
        a, b = torch.zeros(k), torch.zeros(k)
        if label_kind == "multi_hot":
            b[r] = 1.0
            ends.append(("none", str(r)))
        else:
            a[r], b[(r + 1) % k] = 1.0, 1.0
            ends.append((str(r), str((r + 1) % k)))
        rows.append((1 - t) * a + t * b)
    return torch.cat(rows), ends


__all__ = ["LabelSpecError", "check_label_spec", "checkpoint_label_info", "combination_name", "folder_name",
           "folder_names", "interpolation_labels", "label_metadata", "soft_class_labels"]
