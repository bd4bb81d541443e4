"""The GAN loop trains every network x loss on CPU, counts its steps right, keeps an EMA,
honours clipping, and stops cleanly on a non-finite loss."""

import hydra
import lightning as L
import pytest
import torch

from ganlab.models import load_gan
from ganlab.models.gan import NonFiniteLossError
from ganlab.train import train

QUIET = ["callbacks=none", "logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def params(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


@pytest.mark.parametrize("model", ["dcgan", "mlp_gan"])
@pytest.mark.parametrize("loss", ["bce", "hinge", "wgan_gp", "wgan", "lsgan", "r1"])
def test_every_network_and_loss_trains(tiny_cfg, model, loss):
    cfg = tiny_cfg(f"model={model}", f"model/loss={loss}", "generator_steps=3", "model.n_critic=1", *QUIET)
    L.seed_everything(cfg.seed)
    fresh = hydra.utils.instantiate(cfg.model)  # train() seeds the same way, so starts equal
    g0, d0 = params(fresh.generator), params(fresh.discriminator)
    metrics, trainer = train(cfg)
    gan = trainer.lightning_module
    assert gan.generator_step == 3
    assert trainer.global_step == 6  # Lightning counts both optimizers' steps
    for key in ("loss/d", "loss/g", "d/real_score", "d/fake_score"):
        assert torch.isfinite(torch.tensor(metrics[key])), key
    # both networks started from the same init and moved
    assert (params(gan.generator) - g0).abs().max() > 1e-6
    assert (params(gan.discriminator) - d0).abs().max() > 1e-6
    assert all(torch.isfinite(p).all() for p in gan.parameters())


def test_n_critic_counts_and_weight_clip(tiny_cfg):
    cfg = tiny_cfg("model/loss=wgan_gp", "model.n_critic=3", "generator_steps=2", "model.regularizers=[]",
                   "model.d_weight_clip=0.01", "model.g_grad_clip=1.0", "model.d_grad_clip=1.0", *QUIET)
    _, trainer = train(cfg)
    gan = trainer.lightning_module
    assert (gan.generator_step, gan.discriminator_step, trainer.global_step) == (2, 6, 8)
    assert max(p.abs().max().item() for p in gan.discriminator.parameters()) <= 0.01 + 1e-7


def test_ema_differs_from_raw_weights_and_warmup_tracks_them(tiny_cfg):
    _, trainer = train(tiny_cfg("generator_steps=4", "model.ema_decay=0.9", *QUIET))
    gan = trainer.lightning_module
    raw, ema = params(gan.generator), params(gan.generator_ema)
    assert (raw - ema).abs().max() > 1e-6
    z = gan.noise(4, torch.Generator().manual_seed(0))
    assert not torch.allclose(gan.sample(z, ema=True), gan.sample(z, ema=False))

    _, trainer = train(tiny_cfg("generator_steps=4", "model.ema_decay=0.9", "model.ema_start=10", *QUIET))
    gan = trainer.lightning_module
    assert torch.equal(params(gan.generator), params(gan.generator_ema))
    assert gan.ema_decay_at(10) == 0.0 and gan.ema_decay_at(11) == pytest.approx(2 / 11)
    assert gan.ema_decay_at(10**6) == 0.9


def test_ema_samples_are_not_washed_out(tiny_cfg):
    """The EMA copies BatchNorm statistics instead of averaging them: averaged statistics lag
    the weights by thousands of steps and the EMA generator then draws flat grey images."""
    _, trainer = train(tiny_cfg("generator_steps=60", "model.ema_decay=0.999", *QUIET))
    gan = trainer.lightning_module
    z = gan.noise(64, torch.Generator().manual_seed(0))
    raw_std = gan.sample(z, ema=False).std().item()
    ema_std = gan.sample(z, ema=True).std().item()
    assert raw_std > 0.005
    assert ema_std > 0.5 * raw_std


class PoisonGenerator(L.Callback):
    """Make the generator output NaN after ``at`` generator steps."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.generator_step == self.at:
            with torch.no_grad():
                pl_module.generator.to_rgb.bias.fill_(float("nan"))


def test_non_finite_loss_stops_with_last_good_checkpoint(tiny_cfg, tmp_path):
    cfg = tiny_cfg("generator_steps=10", "checkpoint_every=2", "callbacks=[model_checkpoint]", "logger=[]")
    with pytest.raises(NonFiniteLossError, match=r"non-finite discriminator loss .* generator step 6"):
        train(cfg, extra_callbacks=[PoisonGenerator(at=5)])
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    gan = load_gan(ckpt)
    assert gan.generator_step == 4  # the last checkpoint before the poisoned step
    assert all(torch.isfinite(p).all() for p in gan.state_dict().values() if p.is_floating_point())
    z = gan.noise(2)
    assert torch.isfinite(gan.sample(z)).all()
