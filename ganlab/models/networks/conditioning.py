"""Label conditioning shared by every network: the same G and D serve unconditional and
conditional GANs (``num_classes=0`` means unconditional).

Labels come in two kinds: ``"class"`` (int64 ``(B,)``) and ``"multi_hot"`` (float ``(B, K)``,
e.g. CelebA attributes). ``LabelEmbedding`` maps either to a dense vector.
Generator styles: ``concat`` (embedding concatenated to z), ``cbn`` (conditional batch norm) and
``concat+cbn`` (both: the label joins z and sets every BN scale / shift, as BigGAN feeds its class
embedding to the input and to each CBN; CBN alone starts at the identity and learns its class
signal slowly, so the concat path gives one from step 1).
Discriminator styles: ``concat`` (embedding joined to the input), ``projection``
(Miyato & Koyama 2018: ``logit = psi(h) + <embed(y), h>``) and ``adc`` (ADC-GAN, Hou et al. 2022:
an unconditional logit plus a linear classifier over ``2K`` classes, real class c / fake class c, on
the same features; its loss terms are :class:`ganlab.models.losses.ADCLoss`), all from
:class:`ConditionalDiscriminator`, the base of the DCGAN and MLP discriminators.

Every label path is scaled by the network's ``condition_weight`` (1 = the plain conditional network,
0 = exactly unconditional: outputs independent of the labels), which transitional conditioning
(:mod:`ganlab.models.transition`) ramps from 0 to 1; :func:`set_condition_weight` sets it.
"""

from __future__ import annotations

import torch
from torch import nn

from ganlab.models.networks.layers import apply_spectral_norm, dcgan_init


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


def _scaled(x: torch.Tensor, weight: float) -> torch.Tensor:
    """``x * weight``; ``x`` itself at weight 1, so the plain conditional network is unchanged bit for bit."""
    return x if weight == 1.0 else x * weight


def set_condition_weight(module: nn.Module, weight: float) -> None:
    """Scale every label path inside ``module`` by ``weight`` (0: unconditional, 1: conditional)."""
    for m in module.modules():
        if hasattr(m, "condition_weight"):
            m.condition_weight = float(weight)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine parameters; scale and shift come from the label
    (``1 + w * gamma(y)``, ``w * beta(y)`` with the ``condition_weight`` w)."""

    condition_weight: float = 1.0

    def __init__(self, channels: int, num_classes: int, label_kind: str) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = LabelEmbedding(num_classes, channels, label_kind)
        self.beta = LabelEmbedding(num_classes, channels, label_kind)
        nn.init.zeros_(self.gamma.embed.weight)
        nn.init.zeros_(self.beta.embed.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.condition_weight == 0.0:
            return self.bn(x)
        gamma = 1.0 + _scaled(self.gamma(labels), self.condition_weight)[:, :, None, None]
        beta = _scaled(self.beta(labels), self.condition_weight)[:, :, None, None]
        return self.bn(x) * gamma + beta


def check_labels(num_classes: int, labels: torch.Tensor | None) -> None:
    if num_classes and labels is None:
        raise ValueError("this network is conditional (num_classes > 0) and needs labels")


class LabelConditioned(nn.Module):
    """A network whose input may carry the labels: ``self.embed`` (made by :meth:`_add_label_input`)
    is concatenated to it by :meth:`_join_labels` (generators: to z; discriminators: ``concat``)."""

    num_classes: int
    label_kind: str
    condition_weight: float = 1.0

    def _add_label_input(self, num_classes: int, label_kind: str, embed_dim: int) -> int:
        self.embed = LabelEmbedding(num_classes, embed_dim, label_kind)
        return embed_dim

    def _generator_input(self, z_dim: int, num_classes: int, label_kind: str, conditioning: str,
                         embed_dim: int | None, supported: tuple[str, ...] = ("concat",)) -> int:
        """A generator's input width: ``z_dim``, plus the label embedding (``min(z_dim, 128)`` wide
        unless ``embed_dim``) when the labels are concatenated to z; ``conditioning`` must be one of
        ``supported``."""
        if not num_classes:
            return z_dim
        if conditioning not in supported:
            names = [repr(c) for c in supported]
            choices = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
            raise ValueError(f"{type(self).__name__} conditioning must be {choices}, got {conditioning!r}")
        if conditioning not in ("concat", "concat+cbn"):
            return z_dim
        return z_dim + self._add_label_input(num_classes, label_kind, embed_dim or min(z_dim, 128))

    def _join_labels(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``x`` with the label embedding concatenated (``concat``); ``x`` unchanged otherwise."""
        check_labels(self.num_classes, labels)
        if not hasattr(self, "embed"):
            return x
        e = _scaled(self.embed(labels).to(x.dtype), self.condition_weight)
        if x.dim() == 4:
            e = e[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        return torch.cat([x, e], dim=1)


class ConditionalDiscriminator(LabelConditioned):
    """The label head every discriminator shares: ``concat`` (an embedding joined to the input:
    as extra constant channels of an image, or extra features of a flat vector), ``projection``
    (``logit += <embed(y), h>`` over the last features ``h``, summed over space) or ``adc`` (the
    logit ignores the label; :meth:`_classify` gives ``2K`` class logits from ``h``), the DCGAN init,
    the projection's small init and optional spectral norm. Subclasses call
    :meth:`_add_label_head` before building their layers and :meth:`_init_weights` after, and
    return ``(logit, class logits)`` from ``forward(x, labels, with_classes=True)``."""

    conditioning: str

    def _add_label_head(self, num_classes: int, label_kind: str, conditioning: str, embed_dim: int | None,
                        features: int, default_embed_dim: int, pool: str = "sum") -> int:
        """Create ``self.embed`` (concat) or ``self.project`` (projection onto ``features``);
        returns how many input channels/features the concatenated labels add. ``pool``: how the
        projection and ADC heads pool the last feature map over space, ``sum`` or ``mean``."""
        if pool not in ("sum", "mean"):
            raise ValueError(f"discriminator projection_pool must be 'sum' or 'mean', got {pool!r}")
        self.num_classes, self.label_kind, self.conditioning, self.pool = num_classes, label_kind, conditioning, pool
        if num_classes and conditioning == "concat":
            return self._add_label_input(num_classes, label_kind, embed_dim or default_embed_dim)
        if num_classes and conditioning == "projection":
            self.project = LabelEmbedding(num_classes, features, label_kind)
        elif num_classes and conditioning == "adc":
            if label_kind != "class":
                raise ValueError("discriminator conditioning 'adc' (a classifier over real / fake classes) needs "
                                 f"label_kind='class', got {label_kind!r}")
            self.classify = nn.Linear(features, 2 * num_classes)
        elif num_classes:
            raise ValueError("discriminator conditioning must be 'concat', 'projection' or 'adc', "
                             f"got {conditioning!r}")
        return 0

    def _init_weights(self, spectral_norm: bool) -> None:
        dcgan_init(self)
        if hasattr(self, "project"):  # N(0, 1) embeddings would saturate D at the first step
            nn.init.normal_(self.project.embed.weight, 0.0, 0.02)
        if spectral_norm:
            apply_spectral_norm(self)

    def _project_labels(self, logit: torch.Tensor, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``logit + <embed(y), h>`` (``projection``; ``h`` summed over space); ``logit`` otherwise."""
        if not hasattr(self, "project"):
            return logit
        if self.condition_weight == 0.0:
            return logit
        return logit + _scaled((self.project(labels) * _pool(h, self.pool)).sum(dim=1), self.condition_weight)

    def _classify(self, h: torch.Tensor) -> torch.Tensor | None:
        """ADC-GAN's ``2K`` class logits (real classes ``0..K-1``, fake classes ``K..2K-1``) from the
        last features ``h``; ``None`` for a discriminator without that head."""
        return self.classify(_pool(h, self.pool)) if hasattr(self, "classify") else None

    def _outputs(self, logit: torch.Tensor, h: torch.Tensor, labels: torch.Tensor | None,
                 with_classes: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """What ``forward`` returns: the (projected) logit, with the class logits when asked."""
        logit = self._project_labels(logit, h, labels)
        return (logit, self._classify(h)) if with_classes else logit


def _pool(h: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """Last features summed (or averaged) over space (a flat vector passes through)."""
    if h.dim() != 4:
        return h
    return h.sum(dim=(2, 3)) if how == "sum" else h.mean(dim=(2, 3))
