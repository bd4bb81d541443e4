"""Discriminator regularizers, added to the D loss: ``penalty(D, real, fake, labels, step)``.

They need the discriminator itself (gradients with respect to its input), which is why they
are separate from the losses.
"""

from __future__ import annotations

import torch
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

    def __call__(self, discriminator, real, fake, labels, step: int) -> torch.Tensor:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
        x_hat = alpha * real.detach() + (1 - alpha) * fake.detach()
        grad = _input_gradients(discriminator, x_hat, labels)
        return self.weight * ((grad.norm(2, dim=1) - 1.0) ** 2).mean()


class R1Penalty:
    """R1 (Mescheder et al. 2018): ``weight/2 * ||grad D(x_real)||^2``, optionally lazy
    (every ``every`` D steps, scaled by ``every`` as in StyleGAN2)."""

    def __init__(self, weight: float = 10.0, every: int = 1) -> None:
        self.weight = weight
        self.every = every

    def __call__(self, discriminator, real, fake, labels, step: int) -> torch.Tensor:
        if step % self.every:
            return real.new_zeros(())
        grad = _input_gradients(discriminator, real, labels)
        return 0.5 * self.weight * self.every * grad.pow(2).sum(dim=1).mean()
