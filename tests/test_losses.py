"""Loss and regularizer values against closed forms."""

import math

import pytest
import torch
from torch import nn

from ganlab.models.losses import HingeLoss, LeastSquaresLoss, NonSaturatingLoss, WassersteinLoss
from ganlab.models.regularizers import GradientPenalty, R1Penalty

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-3.0, 0.0, 1.5])


def bce(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_non_saturating_with_one_sided_label_smoothing():
    loss = NonSaturatingLoss(label_smoothing=0.1)
    want_d = sum(bce(r, 0.9) for r in REAL.tolist()) / 3 + sum(bce(f, 0.0) for f in FAKE.tolist()) / 3
    want_g = sum(bce(f, 1.0) for f in FAKE.tolist()) / 3
    assert loss.discriminator(REAL, FAKE).item() == pytest.approx(want_d, rel=1e-6)
    assert loss.generator(FAKE).item() == pytest.approx(want_g, rel=1e-6)
    assert torch.allclose(loss.score(torch.zeros(2)), torch.full((2,), 0.5))
    with pytest.raises(ValueError):
        NonSaturatingLoss(label_smoothing=1.0)


def test_hinge_wasserstein_least_squares():
    hinge = HingeLoss()
    assert hinge.discriminator(REAL, FAKE).item() == pytest.approx((0 + 2 + 0.5) / 3 + (0 + 1 + 2.5) / 3)
    assert hinge.generator(FAKE).item() == pytest.approx(-(-3 + 0 + 1.5) / 3)
    w = WassersteinLoss()
    assert w.discriminator(REAL, FAKE).item() == pytest.approx(FAKE.mean() - REAL.mean())
    ls = LeastSquaresLoss()
    want = 0.5 * ((REAL - 1) ** 2).mean() + 0.5 * (FAKE**2).mean()
    assert ls.discriminator(REAL, FAKE).item() == pytest.approx(want.item())
    assert ls.generator(FAKE).item() == pytest.approx((0.5 * (FAKE - 1) ** 2).mean().item())


class LinearCritic(nn.Module):
    """D(x) = <w, x>: the input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x, labels=None):
        return (x.flatten(1) * self.w).sum(1)


def test_gradient_penalty_and_r1_closed_form():
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])  # ||w|| = 5
    d = LinearCritic(w)
    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    assert GradientPenalty(weight=10.0)(d, real, fake, None, 0).item() == pytest.approx(10 * (5 - 1) ** 2)
    assert R1Penalty(weight=2.0)(d, real, fake, None, 0).item() == pytest.approx(0.5 * 2.0 * 25)
    lazy = R1Penalty(weight=2.0, every=4)
    assert lazy(d, real, fake, None, 1).item() == 0.0
    assert lazy(d, real, fake, None, 4).item() == pytest.approx(0.5 * 2.0 * 4 * 25)
    # the penalty is differentiable with respect to the critic's weights
    GradientPenalty()(d, real, fake, None, 0).backward()
    assert d.w.grad is not None and torch.isfinite(d.w.grad).all()
