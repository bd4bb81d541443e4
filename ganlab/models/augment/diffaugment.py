"""DiffAugment (Zhao et al. 2020): the same differentiable colour / translation / cutout
augmentation applied to every image the discriminator sees, reals and fakes, in the D step,
the G step and the regularizers, so gradients reach G through it.

Plain torch ops, not kornia: each op is two or three tensor expressions (a gather for the
translation, a mask for cutout), and kornia's versions resample through ``grid_sample`` and
draw their parameters from the global RNG, which would break the own random stream (base.py).
Each image gets independent parameters. Images are expected in ``[-1, 1]``; translation and
cutout fill with 0 (mid-grey) and so keep that range, the colour ops follow the paper's ranges
scaled by ``color``: brightness +-0.5, saturation x[0, 2] about each pixel's channel mean,
contrast x[0.5, 1.5] about each image's mean.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ganlab.models.augment.base import Augmentation, uniform

POLICIES = ("color", "translation", "cutout")


class DiffAugment(Augmentation):
    def __init__(
        self,
        policy: Sequence[str] = POLICIES,
        color: float = 1.0,
        translation: float = 0.125,
        cutout: float = 0.5,
    ) -> None:
        super().__init__()
        policy = [policy] if isinstance(policy, str) else list(policy)
        unknown = [p for p in policy if p not in POLICIES]
        if unknown:
            raise ValueError(f"DiffAugment policy {unknown} unknown; expected any subset of {list(POLICIES)}")
        for name, value in (("color", color), ("translation", translation), ("cutout", cutout)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"DiffAugment {name} strength must be in [0, 1], got {value}")
        self.policy = tuple(p for p in POLICIES if p in policy)  # the paper's order
        self.color, self.translation, self.cutout = color, translation, cutout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = self.random_generator(x.device)
        for name in self.policy:
            x = getattr(self, f"_{name}")(x, gen)
        return x

    def _color(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return contrast(saturation(brightness(x, gen, self.color), gen, self.color), gen, self.color)

    def _translation(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return translate(x, gen, self.translation)

    def _cutout(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return cutout(x, gen, self.cutout)

    def extra_repr(self) -> str:
        return f"policy={list(self.policy)}, color={self.color}, translation={self.translation}, cutout={self.cutout}"


def _per_image(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1).to(x.dtype)


def brightness(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Add one offset in ``[-0.5, 0.5] * strength`` per image."""
    return x + _per_image(uniform(x.shape[0], x, gen, -0.5 * strength, 0.5 * strength), x)


def saturation(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Scale each pixel's deviation from its channel mean by ``1 + [-1, 1] * strength``."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * _per_image(uniform(x.shape[0], x, gen, 1.0 - strength, 1.0 + strength), x) + mean


def contrast(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Scale each image's deviation from its mean by ``1 + [-0.5, 0.5] * strength``."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    factor = uniform(x.shape[0], x, gen, 1.0 - 0.5 * strength, 1.0 + 0.5 * strength)
    return (x - mean) * _per_image(factor, x) + mean


def translate(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by whole pixels, up to ``ratio`` of its size each way, zero-filled."""
    b, _, h, w = x.shape
    max_y, max_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_y, max_y + 1, (b, 1, 1), device=x.device, generator=gen)
    dx = torch.randint(-max_x, max_x + 1, (b, 1, 1), device=x.device, generator=gen)
    # source index in the 1-pixel zero-padded image; everything shifted in from outside reads the padding
    rows = (torch.arange(h, device=x.device).view(1, h, 1) - dy).clamp(-1, h) + 1
    cols = (torch.arange(w, device=x.device).view(1, 1, w) - dx).clamp(-1, w) + 1
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)  # (b, h+2, w+2, c)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2).contiguous(memory_format=_memory_format(x))


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero one ``ratio``-sized square per image, centred anywhere in the image (clipped at its edges)."""
    b, _, h, w = x.shape
    size_y, size_x = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h, (b, 1, 1), device=x.device, generator=gen) - size_y // 2
    left = torch.randint(0, w, (b, 1, 1), device=x.device, generator=gen) - size_x // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + size_y) & (xs >= left) & (xs < left + size_x)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format
