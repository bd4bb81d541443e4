"""The vanilla fully connected GAN (Goodfellow et al. 2014 style): MLP generator with
LeakyReLU and tanh output, MLP discriminator with LeakyReLU (and optional dropout), for any
image size and channel count.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ganlab.models.networks.conditioning import ConditionalDiscriminator, LabelConditioned
from ganlab.models.networks.layers import dcgan_init, norm1d


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


class MLPGenerator(LabelConditioned):
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
        in_dim = self._generator_input(z_dim, num_classes, label_kind, conditioning, embed_dim)
        self.body = _mlp([in_dim, *hidden], norm, 0.0)
        self.out = nn.Linear(hidden[-1], channels * resolution * resolution)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.tanh(self.out(self.body(self._join_labels(z, labels))))
        return x.view(-1, self.channels, self.resolution, self.resolution)


class MLPDiscriminator(ConditionalDiscriminator):
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
        in_dim = channels * resolution * resolution + self._add_label_head(
            num_classes, label_kind, conditioning, embed_dim, features=hidden[-1], default_embed_dim=64)
        self.body = _mlp([in_dim, *hidden], norm, dropout)
        self.to_logit = nn.Linear(hidden[-1], 1)
        self._init_weights(spectral_norm)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, with_classes: bool = False):
        h = self.body(self._join_labels(x.flatten(1), labels))
        return self._outputs(self.to_logit(h).squeeze(1), h, labels, with_classes)
