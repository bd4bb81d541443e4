"""The latent distribution a generator reads, as its own first layer.

ganlab draws every z as standard normal noise: the training batches (``GAN.noise``) and every sample,
grid and evaluation (``ganlab.sampling``: z of image i from ``(seed, i)``). A generator built with
``latent="uniform"`` maps that noise through the normal CDF, ``u = 2 * Phi(z) - 1 = erf(z / sqrt(2))``,
which is exactly uniform on ``(-1, 1)`` per component (the probability integral transform). So the
choice lives in one place that both paths pass through, a checkpoint carries it with the network,
and the seeds, truncation and interpolations of ``ganlab.sampling`` keep their meaning.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LATENTS = ("normal", "uniform")


class Latent(nn.Module):
    """``normal``: z as drawn (identity); ``uniform``: ``erf(z / sqrt(2))`` ~ U(-1, 1) for z ~ N(0, 1)."""

    def __init__(self, kind: str = "normal") -> None:
        super().__init__()
        if kind not in LATENTS:
            raise ValueError(f"latent must be one of {', '.join(LATENTS)}, got {kind!r}")
        self.kind = kind

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.erf(z / math.sqrt(2.0)) if self.kind == "uniform" else z

    def extra_repr(self) -> str:
        return self.kind
