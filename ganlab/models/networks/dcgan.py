"""DCGAN (Radford et al. 2016): transposed-conv generator with BN+ReLU, strided-conv
discriminator with LeakyReLU(0.2). Any resolution ``s * 2**k`` with a start size ``s`` in 4..7
(28, 32, 48, 64, 96, 128, 256 ...), 1 or 3 channels, configurable widths.
"""

from __future__ import annotations


import torch
from torch import nn

from ganlab.models.networks.conditioning import (
    ConditionalBatchNorm2d,
    ConditionalDiscriminator,
    LabelConditioned,
)
from ganlab.models.networks.layers import dcgan_init, norm2d


def start_size(resolution: int) -> tuple[int, int]:
    """Largest k with ``resolution = s * 2**k`` and ``s >= 4``; returns ``(s, k)``."""
    k = 0
    while resolution % 2 ** (k + 1) == 0 and resolution // 2 ** (k + 1) >= 4:
        k += 1
    s = resolution // 2**k
    if k == 0 or s > 7:
        raise ValueError(f"DCGAN needs resolution = s * 2**k with s in 4..7, k >= 1; got {resolution}")
    return s, k


def stage_widths(k: int, base_width: int, max_width: int) -> list[int]:
    """Widths from the smallest feature map (index 0) to the largest (index k-1)."""
    return [min(max_width, base_width * 2 ** (k - 1 - i)) for i in range(k)]


class DCGANGenerator(LabelConditioned):
    def __init__(
        self,
        z_dim: int = 100,
        resolution: int = 64,
        channels: int = 3,
        base_width: int = 64,
        max_width: int = 512,
        num_classes: int = 0,
        label_kind: str = "class",
        conditioning: str = "concat",
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.num_classes, self.label_kind, self.conditioning = num_classes, label_kind, conditioning
        s, k = start_size(resolution)
        widths = stage_widths(k, base_width, max_width)
        in_dim = self._generator_input(z_dim, num_classes, label_kind, conditioning, embed_dim,
                                       supported=("concat", "cbn", "concat+cbn"))
        cbn = bool(num_classes) and conditioning in ("cbn", "concat+cbn")
        ins, outs = [in_dim] + widths[:-1], widths
        kernels = [(s, 1, 0)] + [(4, 2, 1)] * (k - 1)
        self.convs = nn.ModuleList(
            nn.ConvTranspose2d(i, o, kk, st, p, bias=False) for i, o, (kk, st, p) in zip(ins, outs, kernels)
        )
        self.norms = nn.ModuleList(
            ConditionalBatchNorm2d(o, num_classes, label_kind) if cbn else nn.BatchNorm2d(o) for o in outs
        )
        self.to_rgb = nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = self._join_labels(z, labels)
        h = z.view(z.shape[0], -1, 1, 1)
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h)
            h = norm(h, labels) if isinstance(norm, ConditionalBatchNorm2d) else norm(h)
            h = torch.relu(h)
        return torch.tanh(self.to_rgb(h))


class DCGANDiscriminator(ConditionalDiscriminator):
    def __init__(
        self,
        resolution: int = 64,
        channels: int = 3,
        base_width: int = 64,
        max_width: int = 512,
        norm: str = "batch",
        spectral_norm: bool = False,
        num_classes: int = 0,
        label_kind: str = "class",
        conditioning: str = "projection",
        embed_dim: int | None = None,
        projection_pool: str = "sum",
    ) -> None:
        super().__init__()
        self.resolution, self.channels = resolution, channels
        s, k = start_size(resolution)
        widths = stage_widths(k, base_width, max_width)[::-1]  # largest map first
        in_ch = channels + self._add_label_head(num_classes, label_kind, conditioning, embed_dim,
                                                features=widths[-1], default_embed_dim=min(num_classes, 16),
                                                pool=projection_pool)
        layers: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers.append(nn.Conv2d(in_ch, w, 4, 2, 1, bias=(i == 0 or norm == "none")))
            if i > 0:  # DCGAN: no normalisation on the first layer
                layers.append(norm2d(norm, w))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = w
        self.features = nn.Sequential(*layers)
        self.to_logit = nn.Conv2d(in_ch, 1, s, 1, 0)
        self._init_weights(spectral_norm)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, with_classes: bool = False):
        h = self.features(self._join_labels(x, labels))
        return self._outputs(self.to_logit(h).flatten(1).squeeze(1), h, labels, with_classes)
