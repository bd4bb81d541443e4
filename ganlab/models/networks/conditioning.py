"""Label conditioning shared by every network: the same G and D serve unconditional and
conditional GANs (``num_classes=0`` means unconditional).

Labels come in two kinds: ``"class"`` (int64 ``(B,)``) and ``"multi_hot"`` (float ``(B, K)``,
e.g. CelebA attributes). ``LabelEmbedding`` maps either to a dense vector.
Generator styles: ``concat`` (embedding concatenated to z), ``cbn`` (conditional batch norm) and
``concat+cbn`` (both: the label joins z and sets every BN scale / shift, as BigGAN feeds its class
embedding to the input and to each CBN; CBN alone starts at the identity and learns its class
signal slowly, so the concat path gives one from step 1).
Discriminator styles: ``concat`` (embedding joined to the input) and ``projection``
(Miyato & Koyama 2018: ``logit = psi(h) + <embed(y), h>``).
"""

from __future__ import annotations

import torch
from torch import nn


class LabelEmbedding(nn.Module):
    def __init__(self, num_classes: int, dim: int, label_kind: str = "class") -> None:
        super().__init__()
        if label_kind not in ("class", "multi_hot"):
            raise ValueError(f"label_kind must be 'class' or 'multi_hot', got {label_kind!r}")
        self.label_kind = label_kind
        if label_kind == "class":
            self.embed = nn.Embedding(num_classes, dim)
        else:
            self.embed = nn.Linear(num_classes, dim, bias=False)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.label_kind == "class":
            return self.embed(labels.long().view(-1))
        return self.embed(labels.float())


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine parameters; scale and shift come from the label."""

    def __init__(self, channels: int, num_classes: int, label_kind: str) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = LabelEmbedding(num_classes, channels, label_kind)
        self.beta = LabelEmbedding(num_classes, channels, label_kind)
        nn.init.zeros_(self.gamma.embed.weight)
        nn.init.zeros_(self.beta.embed.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gamma = 1.0 + self.gamma(labels)[:, :, None, None]
        beta = self.beta(labels)[:, :, None, None]
        return self.bn(x) * gamma + beta


def check_labels(num_classes: int, labels: torch.Tensor | None) -> None:
    if num_classes and labels is None:
        raise ValueError("this network is conditional (num_classes > 0) and needs labels")
