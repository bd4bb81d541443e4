"""Mode seeking (MSGAN): the term's closed form, that it pushes a collapsed conditional generator's images
apart, and that it trains inside the GAN loop with labels and resumes exactly."""

import pytest
import torch
from torch import nn

from _cgan_helpers import TINY_DCGAN, fashion_overrides, write_fashion_like
from ganlab.models import load_gan
from ganlab.models.regularizers import ModeSeeking
from ganlab.train import train

QUIET = ["logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


class Affine(nn.Module):
    """G(z, y) = a * z + b[y]: the image moves with z by exactly |a|."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.zeros(3, 4))

    def forward(self, z, labels):
        return self.a * z + self.b[labels]


def test_closed_form_and_gradient_towards_variety():
    torch.manual_seed(0)
    z, y = torch.randn(8, 4), torch.arange(8) % 3
    for a in (0.5, 2.0):
        g = Affine(a)
        term = ModeSeeking(weight=0.7, eps=0.0)(g, g(z, y), z, y)
        # |G(z1,y) - G(z2,y)| = |a| |z1 - z2|: the ratio is |a|, whatever the second noise was
        assert term.item() == pytest.approx(0.7 / a, rel=1e-5)
        term.backward()
        assert g.a.grad.item() == pytest.approx(-0.7 / a ** 2, rel=1e-4)  # descent makes |a| larger
        assert torch.count_nonzero(g.b.grad) == 0  # the class offsets cancel: only variety is pushed
    collapsed = Affine(0.0)  # one image per class whatever z is: the largest penalty
    assert ModeSeeking(weight=1.0)(collapsed, collapsed(z, y), z, y).item() == pytest.approx(1e5)
    with pytest.raises(ValueError, match="weight"):
        ModeSeeking(weight=-1.0)


RESUME = ["model=cgan", *TINY_DCGAN, "model/mode_seeking=default", "model.mode_seeking.weight=0.5",
          "data.resolution=16", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "trainer.deterministic=true",
          "callbacks=[model_checkpoint]", *QUIET]


def test_trains_with_labels_and_resumes_exactly(tmp_path):
    from conftest import compose_cfg

    def make_cfg(folder, *overrides):
        return compose_cfg(folder, *overrides, tiny=False)

    data = fashion_overrides(write_fashion_like(tmp_path / "fm"))
    metrics, trainer = train(make_cfg(tmp_path / "a", "generator_steps=6", "checkpoint_every=6", *data, *RESUME))
    assert 0 < metrics["reg/ModeSeeking"] < 0.5 * 1e5 and trainer.lightning_module.mode_seeking.weight == 0.5
    train(make_cfg(tmp_path / "b", "generator_steps=3", "checkpoint_every=3", *data, *RESUME))
    half = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    train(make_cfg(tmp_path / "b", "generator_steps=6", "checkpoint_every=6", f"ckpt_path={half}", *data, *RESUME))
    a = load_gan(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt").state_dict()
    b = load_gan(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
