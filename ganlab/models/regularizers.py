"""Discriminator regularizers, added to the D loss:
``penalty(D, real, fake, labels, step, *, d_real, d_fake)``.

``real`` and ``fake`` are the images D saw in the D step (augmented, with instance noise), so
gradient penalties act on what D sees; ``d_real`` and ``d_fake`` are D's outputs on them, with
their graph, for regularizers on D's outputs (LeCam); ``step`` counts D steps. They need the
discriminator itself or its outputs, which is why they are separate from the losses.
Regularizers with state (LeCam's EMAs) are ``nn.Module``s held by the GAN module, so their
state is in every checkpoint.

One generator regularizer lives here too, :class:`ModeSeeking`, added to the G loss:
``term(G, fake, z, labels)`` with the step's fakes and the noise that made them.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn


def _input_gradients(discriminator: nn.Module, x: torch.Tensor, labels) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = discriminator(x, labels)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1)


class GradientPenalty:
    """WGAN-GP (Gulrajani et al. 2017): ``weight * (||grad D(x_hat)|| - 1)^2`` on random
    interpolates of real and fake images."""

    def __init__(self, weight: float = 10.0) -> None:
        self.weight = weight

    def __call__(self, discriminator, real, fake, labels, step: int, **outputs) -> torch.Tensor:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
        x_hat = alpha * real.detach() + (1 - alpha) * fake.detach()
        grad = _input_gradients(discriminator, x_hat, labels)
        return self.weight * ((grad.norm(2, dim=1) - 1.0) ** 2).mean()


def warn_batch_norm_critic(regularizers, discriminator: nn.Module) -> None:
    """The gradient penalty is per sample; batch norm couples the samples of a batch, so the penalty
    no longer constrains D's gradient at each point (Gulrajani et al. 2017, section 4)."""
    if any(isinstance(r, GradientPenalty) for r in regularizers) and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules()):
        warnings.warn("the gradient penalty (model/loss=wgan_gp) is used with batch norm in the discriminator; "
                      "WGAN-GP's critic has none: model.discriminator.norm=layer, or the whole recipe with "
                      "experiment=wgan_gp", stacklevel=3)


class R1Penalty:
    """R1 (Mescheder et al. 2018): ``weight/2 * ||grad D(x_real)||^2``, optionally lazy
    (every ``every`` D steps, scaled by ``every`` as in StyleGAN2)."""

    def __init__(self, weight: float = 10.0, every: int = 1) -> None:
        self.weight = weight
        self.every = every

    def __call__(self, discriminator, real, fake, labels, step: int, **outputs) -> torch.Tensor:
        if step % self.every:
            return real.new_zeros(())
        grad = _input_gradients(discriminator, real, labels)
        return 0.5 * self.weight * self.every * grad.pow(2).sum(dim=1).mean()


class LeCam(nn.Module):
    """LeCam regularization (Tseng et al. 2021):
    ``weight * (mean(relu(D(x) - ema_fake)^2) + mean(relu(ema_real - D(G(z)))^2))``, which
    keeps D's outputs on reals from running away above its recent outputs on fakes and the
    other way round (a bounded LeCam divergence). The EMAs of D's mean outputs are buffers
    (checkpointed); they copy the current means for the first ``start`` D steps, as in the
    paper's code, then average with ``decay``. Needs only D's outputs, so it composes with
    every loss; under DDP the means are averaged over ranks first.
    """

    def __init__(self, weight: float = 0.3, decay: float = 0.99, start: int = 1000) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"LeCam decay must be in [0, 1), got {decay}")
        self.weight, self.decay, self.start = weight, decay, start
        self.register_buffer("ema_real", torch.tensor(0.0))
        self.register_buffer("ema_fake", torch.tensor(0.0))

    def forward(self, discriminator, real, fake, labels, step: int, *, d_real: torch.Tensor,
                d_fake: torch.Tensor) -> torch.Tensor:
        self._update(d_real.detach(), d_fake.detach(), 0.0 if step < self.start else self.decay)
        reg = F.relu(d_real - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - d_fake).pow(2).mean()
        return self.weight * reg

    @torch.no_grad()
    def _update(self, d_real: torch.Tensor, d_fake: torch.Tensor, decay: float) -> None:
        means = torch.stack([d_real.float().mean(), d_fake.float().mean()])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(means)
            means /= torch.distributed.get_world_size()
        self.ema_real.lerp_(means[0], 1.0 - decay)
        self.ema_fake.lerp_(means[1], 1.0 - decay)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, decay={self.decay}, start={self.start}"


class ModeSeeking:
    """Mode seeking (MSGAN, Mao et al. CVPR 2019) against a conditional generator drawing one shape per
    class: a second batch from fresh noise with the same labels, and G minimises
    ``weight / (mean|G(z1,y) - G(z2,y)| / mean|z1 - z2| + eps)``, so images must move when z does (the
    paper's batch-mean form). Costs one extra generator forward/backward per G step."""

    def __init__(self, weight: float = 1.0, eps: float = 1e-5) -> None:
        if weight < 0:
            raise ValueError(f"ModeSeeking weight must be >= 0, got {weight}")
        self.weight, self.eps = weight, eps

    def __call__(self, generator: nn.Module, fake: torch.Tensor, z: torch.Tensor, labels) -> torch.Tensor:
        z2 = torch.randn_like(z)
        fake2 = generator(z2, labels)
        ratio = (fake - fake2).abs().mean() / (z - z2).abs().mean()
        return self.weight / (ratio + self.eps)
