"""A few-line Python API for notebooks::

    import ganlab
    gan = ganlab.load("outputs/2026-01-01/12-00-00")      # a run folder or a .ckpt file
    x = gan.sample(16, seed=0)                            # uint8 (16, C, H, W) tensor
    gan.grid(64, seed=0).save("grid.png")                 # a PIL image
    pics = gan.images(4, seed=0, labels="Sandal")         # list of PIL images (conditional models)
    walk = gan.interpolate(steps=8, rows=2, seed=0)       # uint8 (2 * 8, C, H, W), slerp

The checkpoint is opened by :func:`ganlab.run.open_run` (read once and safely: ``weights_only=True``,
the stored model config's ``_target_`` checked; ``trust=True`` for files you trust), and the EMA
generator samples by default. Noise and labels come from :mod:`ganlab.sampling`, so ``gan.sample(n, seed=s)`` are
images ``0 .. n-1`` of ``python -m ganlab.generate seed=s`` (same labels given) and the fakes of an
evaluation with ``seed=s``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ganlab import sampling
from ganlab.labels import LabelError, LabelInfo, request_tensor

LabelsArg = Any  # None | int | str | sequence of those / of attribute lists | tensor


@dataclass
class Sampler:
    """A trained GAN ready to draw from; made by :func:`load`."""

    model: torch.nn.Module
    path: str
    class_names: list[str] = field(default_factory=list)
    ema: bool = True

    @property
    def num_classes(self) -> int:
        return int(getattr(self.model, "num_classes", 0) or 0)

    @property
    def label_kind(self) -> str | None:
        return getattr(self.model, "label_kind", None) if self.num_classes else None

    @property
    def device(self) -> torch.device:
        return sampling.model_device(self.model)

    # -- labels ---------------------------------------------------------------------------------------
    @property
    def label_info(self) -> LabelInfo:
        return LabelInfo(self.num_classes, self.label_kind, list(self.class_names))

    def labels(self, n: int, labels: LabelsArg = None, seed: int = 0) -> torch.Tensor | None:
        """The label tensor of ``n`` images. ``None``: unconditional models get none, conditional ones
        the evaluation plan of ``seed`` (uniform classes / attributes). A class (index or name) or an
        attribute combination (``"Eyeglasses+Male"``, ``["Eyeglasses", "Male"]``, ``[]`` = none):
        all ``n`` images get it. A list of ``n`` of those: one per image. A tensor: used as is
        (:func:`ganlab.labels.request_tensor`; a bad one raises :class:`ganlab.labels.LabelError`)."""
        if not self.num_classes:
            if labels is not None:
                raise LabelError(f"{self.path} is unconditional (trained without labels): pass labels=None")
            return None
        if labels is None:
            return sampling.evaluation_labels(self.num_classes, self.label_kind, n, seed)
        return request_tensor(self.label_info, labels, n)

    # -- drawing --------------------------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0, labels: LabelsArg = None, *, truncation: float = 1.0,
               batch_size: int = 256) -> torch.Tensor:
        """uint8 ``(n, C, H, W)`` CPU tensor: images ``0 .. n-1`` of the sampling plan of ``seed``
        (``truncation`` psi < 1: the truncation trick, :func:`ganlab.sampling.latent`)."""
        z = sampling.latents(seed, int(n), self.model.z_dim, truncation)
        return sampling.render(self.model, z, self.labels(int(n), labels, seed), batch_size=batch_size,
                               ema=self.ema)

    def images(self, n: int, seed: int = 0, labels: LabelsArg = None, **kw: Any) -> list:
        """:meth:`sample` as a list of PIL images."""
        return [sampling.to_pil(x) for x in self.sample(n, seed, labels, **kw)]

    def grid(self, n: int = 64, seed: int = 0, labels: LabelsArg = None, nrow: int | None = None, **kw: Any):
        """:meth:`sample` as one PIL image (``nrow`` per row, default ``sqrt(n)``)."""
        x = self.sample(n, seed, labels, **kw)
        return sampling.to_pil(sampling.grid_image(x, nrow or max(1, int(n**0.5))))

    def interpolate(self, steps: int = 8, rows: int = 1, seed: int = 0, mode: str = "slerp",
                    labels: LabelsArg = None) -> torch.Tensor:
        """uint8 ``(rows * steps, C, H, W)``: row r walks from latent ``2r`` to ``2r + 1`` of the plan
        ``seed`` (``slerp`` or ``lerp``); labels: one per row (default: class r, as in the grids)."""
        z = sampling.latent_interpolation(seed, self.model.z_dim, rows, steps, mode)
        if labels is None:
            lab = sampling.walk_labels(self.num_classes, self.label_kind, rows, steps)
        else:
            per_row = self.labels(rows, labels, seed)
            lab = None if per_row is None else per_row.repeat_interleave(steps, dim=0)
        return sampling.render(self.model, z, lab, ema=self.ema)

    def to(self, device: str | torch.device) -> "Sampler":
        self.model.to(device)
        return self


def load(path: str | os.PathLike, *, device: str | torch.device | None = None, ema: bool = True,
         trust: bool = False) -> Sampler:
    """A :class:`Sampler` of the checkpoint at ``path`` (a ``.ckpt`` file, or a run folder: its loadable
    checkpoint furthest into training), opened by :func:`ganlab.run.open_run`. ``device``: default CUDA when
    available, else CPU. ``ema=False``: the raw generator. Raises
    :class:`ganlab.checkpoints.CheckpointError` with one message naming the file."""
    from ganlab.run import open_run

    run = open_run(path, device=device, ema=ema, trust=trust)
    return Sampler(run.model, run.path, list(run.labels.class_names), run.ema)


__all__ = ["Sampler", "load"]
