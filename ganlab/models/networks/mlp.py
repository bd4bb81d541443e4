"""The vanilla fully connected GAN (Goodfellow et al. 2014 style): MLP generator with
LeakyReLU and tanh output, MLP discriminator with LeakyReLU (and optional dropout), for any
image size and channel count.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ganlab.models.networks.conditioning import LabelEmbedding, check_labels
from ganlab.models.networks.layers import apply_spectral_norm, dcgan_init, norm1d


def _mlp(dims: Sequence[int], norm: str, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i > 0:
            layers.append(norm1d(norm, b))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    def __init__(
        self,
        z_dim: int = 100,
        resolution: int = 32,
        channels: int = 3,
        hidden: Sequence[int] = (256, 512, 1024),
        norm: str = "batch",
        num_classes: int = 0,
        label_kind: str = "class",
        conditioning: str = "concat",
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.num_classes, self.label_kind = num_classes, label_kind
        in_dim = z_dim
        if num_classes:
            if conditioning != "concat":
                raise ValueError("the MLP generator supports conditioning='concat' only")
            embed_dim = embed_dim or min(z_dim, 128)
            self.embed = LabelEmbedding(num_classes, embed_dim, label_kind)
            in_dim += embed_dim
        self.body = _mlp([in_dim, *hidden], norm, 0.0)
        self.out = nn.Linear(hidden[-1], channels * resolution * resolution)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self.num_classes, labels)
        if hasattr(self, "embed"):
            z = torch.cat([z, self.embed(labels)], dim=1)
        x = torch.tanh(self.out(self.body(z)))
        return x.view(-1, self.channels, self.resolution, self.resolution)


class MLPDiscriminator(nn.Module):
    def __init__(
        self,
        resolution: int = 32,
        channels: int = 3,
        hidden: Sequence[int] = (1024, 512, 256),
        norm: str = "none",
        dropout: float = 0.3,
        spectral_norm: bool = False,
        num_classes: int = 0,
        label_kind: str = "class",
        conditioning: str = "projection",
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.resolution, self.channels = resolution, channels
        self.num_classes, self.label_kind, self.conditioning = num_classes, label_kind, conditioning
        in_dim = channels * resolution * resolution
        if num_classes and conditioning == "concat":
            embed_dim = embed_dim or 64
            self.embed = LabelEmbedding(num_classes, embed_dim, label_kind)
            in_dim += embed_dim
        elif num_classes and conditioning == "projection":
            self.project = LabelEmbedding(num_classes, hidden[-1], label_kind)
        elif num_classes:
            raise ValueError(f"discriminator conditioning must be 'concat' or 'projection', got {conditioning!r}")
        self.body = _mlp([in_dim, *hidden], norm, dropout)
        self.to_logit = nn.Linear(hidden[-1], 1)
        dcgan_init(self)
        if hasattr(self, "project"):  # N(0, 1) embeddings would saturate D at the first step
            nn.init.normal_(self.project.embed.weight, 0.0, 0.02)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_labels(self.num_classes, labels)
        h = x.flatten(1)
        if hasattr(self, "embed"):
            h = torch.cat([h, self.embed(labels).to(h.dtype)], dim=1)
        h = self.body(h)
        logit = self.to_logit(h).squeeze(1)
        if hasattr(self, "project"):
            logit = logit + (self.project(labels) * h).sum(dim=1)
        return logit
