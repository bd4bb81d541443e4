"""Adversarial losses. Each takes discriminator logits and returns a scalar.

``score`` turns logits into the number people plot as D(x) / D(G(z)): a probability for the
BCE loss, the raw critic value otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class AdversarialLoss:
    # the logit value between "real" and "fake" (ADA's r_t counts the sign of D(real) - this)
    decision_boundary = 0.0

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class NonSaturatingLoss(AdversarialLoss):
    """Goodfellow et al. 2014, non-saturating G loss. ``label_smoothing=0.1`` gives the
    one-sided smoothing of Salimans et al. 2016 (real target 0.9, fake target stays 0)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def discriminator(self, real, fake):
        target = torch.full_like(real, 1.0 - self.label_smoothing)
        return F.binary_cross_entropy_with_logits(real, target) + F.binary_cross_entropy_with_logits(
            fake, torch.zeros_like(fake)
        )

    def generator(self, fake):
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))

    def score(self, logits):
        return torch.sigmoid(logits)


class HingeLoss(AdversarialLoss):
    """Lim & Ye 2017 / Miyato et al. 2018 (SNGAN, BigGAN)."""

    def discriminator(self, real, fake):
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    def generator(self, fake):
        return -fake.mean()


class WassersteinLoss(AdversarialLoss):
    """Arjovsky et al. 2017. Pair with ``GradientPenalty`` (WGAN-GP) or D weight clipping."""

    def discriminator(self, real, fake):
        return fake.mean() - real.mean()

    def generator(self, fake):
        return -fake.mean()


class LeastSquaresLoss(AdversarialLoss):
    """Mao et al. 2017 (LSGAN, a-b-c = 0-1-1)."""

    decision_boundary = 0.5

    def discriminator(self, real, fake):
        return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake**2).mean()

    def generator(self, fake):
        return 0.5 * ((fake - 1.0) ** 2).mean()


class ADCLoss:
    """ADC-GAN's classifier terms (Hou et al. 2022) for a discriminator with conditioning ``adc``,
    whose head gives ``2K`` class logits: real images of class c are class ``c``, generated ones
    class ``K + c``. D minimises ``weight * (CE(real -> c) + CE(fake -> K + c))``; G minimises
    ``weight * (CE(fake -> c) - CE(fake -> K + c))``: look like a real c, not like a generated c.
    Added to the adversarial loss by :class:`ganlab.models.gan.GAN` (``class_loss``)."""

    def __init__(self, weight: float = 1.0) -> None:
        if weight < 0:
            raise ValueError(f"ADCLoss weight must be >= 0, got {weight}")
        self.weight = weight

    def discriminator(self, real_classes: torch.Tensor, fake_classes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y, k = labels.long().view(-1), real_classes.shape[1] // 2
        return self.weight * (F.cross_entropy(real_classes, y) + F.cross_entropy(fake_classes, y + k))

    def generator(self, fake_classes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y, k = labels.long().view(-1), fake_classes.shape[1] // 2
        return self.weight * (F.cross_entropy(fake_classes, y) - F.cross_entropy(fake_classes, y + k))

    def __repr__(self) -> str:
        return f"ADCLoss(weight={self.weight})"
