"""The InfoGAN-style networks of Lucic et al. 2018 ("Are GANs Created Equal?", their Table 4; the
``infogan`` architecture of google/compare_gan) for 28x28 MNIST / Fashion-MNIST:

    D: conv 4x4/2 -> 64, lReLU 0.2; conv 4x4/2 -> 128, BN, lReLU; FC 1024, BN, lReLU; FC 1
    G: z (64, uniform(-1, 1)) -> FC 1024, BN, ReLU; FC 7*7*128, BN, ReLU;
       deconv 4x4/2 -> 64, BN, ReLU; deconv 4x4/2 -> channels, sigmoid

Convolutions and FC layers carry biases (as compare_gan's ops), weights ~ N(0, 0.02). The
discriminator's batch norm is an option (``norm``): compare_gan switches it off for the
gradient-penalty losses (WGAN-GP), where a per-sample penalty must not mix the batch.
The paper's generator ends in a sigmoid (images in [0, 1]); ganlab's images are in [-1, 1], so
the output is ``2 * sigmoid(x) - 1`` (= ``tanh(x / 2)``): the same function of the same logits,
rescaled to ganlab's range. ``latent="uniform"`` (:mod:`~ganlab.models.networks.latent`) gives the
paper's uniform z. Any resolution divisible by 4 works (the first map is ``resolution / 4``);
labels are supported as in the other networks (``num_classes > 0``: concat / projection).
"""

from __future__ import annotations

import torch
from torch import nn

from ganlab.models.networks.conditioning import ConditionalDiscriminator, LabelConditioned
from ganlab.models.networks.latent import Latent
from ganlab.models.networks.layers import dcgan_init, norm1d, norm2d


def base_size(resolution: int) -> int:
    if resolution % 4 or resolution < 8:
        raise ValueError(f"the InfoGAN networks need a resolution divisible by 4 (two stride-2 layers), "
                         f"got {resolution}")
    return resolution // 4


class InfoGANGenerator(LabelConditioned):
    def __init__(
        self,
        z_dim: int = 64,
        resolution: int = 28,
        channels: int = 1,
        hidden: int = 1024,
        width: int = 64,
        latent: str = "uniform",
        num_classes: int = 0,
        label_kind: str = "class",
        conditioning: str = "concat",
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.z_dim, self.resolution, self.channels = z_dim, resolution, channels
        self.num_classes, self.label_kind, self.conditioning = num_classes, label_kind, conditioning
        self.s = base_size(resolution)
        self.latent = Latent(latent)
        in_dim = self._generator_input(z_dim, num_classes, label_kind, conditioning, embed_dim)
        self.fc = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 2 * width * self.s * self.s), nn.BatchNorm1d(2 * width * self.s * self.s),
            nn.ReLU(inplace=True),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
        )
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(self._join_labels(self.latent(z.flatten(1)), labels))
        h = self.deconv(h.view(h.shape[0], -1, self.s, self.s))
        return 2.0 * torch.sigmoid(h) - 1.0  # the paper's sigmoid, in ganlab's [-1, 1]


class InfoGANDiscriminator(ConditionalDiscriminator):
    def __init__(
        self,
        resolution: int = 28,
        channels: int = 1,
        hidden: int = 1024,
        width: int = 64,
        norm: str = "batch",
        spectral_norm: bool = False,
        num_classes: int = 0,
        label_kind: str = "class",
        conditioning: str = "projection",
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.resolution, self.channels = resolution, channels
        s = base_size(resolution)
        in_ch = channels + self._add_label_head(num_classes, label_kind, conditioning, embed_dim,
                                                features=hidden, default_embed_dim=min(num_classes, 16))
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1), norm2d(norm, 2 * width), nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
            nn.Linear(2 * width * s * s, hidden), norm1d(norm, hidden), nn.LeakyReLU(0.2, inplace=True),
        )
        self.to_logit = nn.Linear(hidden, 1)
        self._init_weights(spectral_norm)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(self._join_labels(x, labels))
        return self._project_labels(self.to_logit(h).squeeze(1), h, labels)
