"""LeCam regularization: the closed form, its EMAs (buffers, copy-then-average), and that it
composes with every loss and every augmentation; resume stays exact with ADA and LeCam on."""

import pytest
import torch

from ganlab.models import load_gan
from ganlab.models.regularizers import LeCam
from ganlab.train import train

QUIET = ["callbacks=none", "logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def test_lecam_closed_form_and_emas():
    d_real = torch.tensor([2.0, 0.0, 1.0, -1.0], requires_grad=True)  # mean 0.5
    d_fake = torch.tensor([-2.0, 1.0, 0.0, -3.0], requires_grad=True)  # mean -1.0
    lecam = LeCam(weight=0.5, decay=0.9, start=1)
    reg = lecam(None, None, None, None, 0, d_real=d_real, d_fake=d_fake)
    # step 0 < start: the EMAs copy the means
    assert (lecam.ema_real.item(), lecam.ema_fake.item()) == (0.5, -1.0)
    # relu(d_real + 1)^2 = [9, 1, 4, 0]; relu(0.5 - d_fake)^2 = [6.25, 0, 0.25, 12.25]
    assert reg.item() == pytest.approx(0.5 * (14 / 4 + 18.75 / 4))
    reg.backward()
    assert d_real.grad.tolist() == pytest.approx([0.5 * 2 * 3 / 4, 0.5 * 2 * 1 / 4, 0.5 * 2 * 2 / 4, 0.0])
    # from `start` on the EMAs average: 0.9 * old + 0.1 * new mean
    lecam(None, None, None, None, 1, d_real=torch.full((4,), 1.5), d_fake=torch.full((4,), 0.0))
    assert lecam.ema_real.item() == pytest.approx(0.9 * 0.5 + 0.1 * 1.5)
    assert lecam.ema_fake.item() == pytest.approx(0.9 * -1.0)
    assert set(lecam.state_dict()) == {"ema_real", "ema_fake"}


@pytest.mark.parametrize("loss", ["bce", "hinge", "wgan_gp", "lsgan"])
def test_lecam_composes_with_every_loss_and_augmentation(tiny_cfg, loss):
    augment = {"bce": "ada", "hinge": "diffaug", "wgan_gp": "ada", "lsgan": "diffaug"}[loss]
    cfg = tiny_cfg(f"model/loss={loss}", "model.n_critic=1", "model/lecam=default", "model.lecam.start=1",
                   f"model/augment={augment}", "generator_steps=3", *QUIET)
    metrics, trainer = train(cfg)
    gan = trainer.lightning_module
    assert metrics["reg/LeCam"] >= 0 and torch.isfinite(torch.tensor(metrics["reg/LeCam"]))
    assert gan.lecam.ema_real.item() != 0.0 and gan.lecam.ema_fake.item() != 0.0
    assert "lecam.ema_real" in gan.state_dict() and "lecam.ema_fake" in gan.state_dict()
    if loss == "wgan_gp":
        assert "reg/GradientPenalty" in metrics  # the loss's own regularizers still run


# 91 training images / batch 16: the checkpoint at G step 4 sits mid-epoch, mid ADA interval
# (4 D steps, interval 3) and after LeCam's EMAs started averaging (start 2).
RESUME = [
    "trainer.deterministic=true", "data.source.num_images=91", "model.instance_noise=0.1", "model.ema_decay=0.9",
    "model/augment=ada", "model.augment.interval=3", "model.augment.speed_images=200",
    "model/lecam=default", "model.lecam.start=2", "model.lecam.decay=0.5",
    "callbacks=[model_checkpoint]", "logger=[]",
]


def test_resume_is_exact_with_ada_and_lecam(tmp_path, make_cfg):
    train(make_cfg(tmp_path / "a", "generator_steps=8", "checkpoint_every=8", *RESUME))
    train(make_cfg(tmp_path / "b", "generator_steps=4", "checkpoint_every=4", *RESUME))
    half = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    mid = load_gan(half)
    assert mid.generator_step == 4 and mid.augment.accumulator[2].item() == 1.0  # mid-interval
    train(make_cfg(tmp_path / "b", "generator_steps=8", "checkpoint_every=8", f"ckpt_path={half}", *RESUME))

    a = load_gan(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt")
    b = load_gan(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt")
    assert a.generator_step == b.generator_step == 8
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert {"augment.p", "augment.r_t", "augment.accumulator", "augment._extra_state",
            "lecam.ema_real", "lecam.ema_fake"} <= set(sa)
    assert a.augment.p.item() > 0  # p moved, so its restore is tested, not just its initial value
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs after resume"
