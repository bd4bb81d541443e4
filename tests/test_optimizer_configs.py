"""Every optimizer config is a complete pair that replaces the others (no keys merged in from a
loss or an experiment), and the README's original-WGAN recipe is the paper's (Arjovsky et al. 2017)."""

from pathlib import Path

import hydra
import pytest
import torch

from conftest import CONF

OPTIMIZERS = sorted(p.stem for p in (Path(CONF) / "model" / "optimizer").glob("*.yaml"))


# experiments compose their own data config: only the networks are made small
SMALL = ["model.generator.base_width=8", "model.discriminator.base_width=8", "data.resolution=16"]


def built_optimizers(cfg):
    gen = cfg.model.generator
    if "num_classes" in gen and gen.num_classes is None:  # conditional: train() takes it from the data
        gen.num_classes = 10
    gan = hydra.utils.instantiate(cfg.model)
    (opt_g, opt_d), _ = gan.configure_optimizers()
    return gan, opt_g, opt_d


def test_original_wgan_recipe_is_the_papers(tiny_cfg):
    # the README's "original WGAN (weight clipping)" line
    gan, opt_g, opt_d = built_optimizers(tiny_cfg("model/loss=wgan"))
    for opt in (opt_g, opt_d):
        assert type(opt) is torch.optim.RMSprop
        assert opt.defaults["lr"] == pytest.approx(5e-5)
        assert opt.defaults["momentum"] == 0 and opt.defaults["weight_decay"] == 0.0
    assert gan.d_weight_clip == 0.01 and gan.n_critic == 5 and gan.regularizers == []
    assert type(gan.loss).__name__ == "WassersteinLoss"
    # the paper's DCGAN critic keeps batch norm (only WGAN-GP drops it)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in gan.discriminator.modules())
    assert not any(isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)) for m in gan.discriminator.modules())


@pytest.mark.parametrize("overrides", [
    ["model/loss=wgan_gp", "model/optimizer=rmsprop"],
    ["model/loss=wgan", "model/optimizer=rmsprop"],
    ["experiment=sngan_celeba", "model/optimizer=rmsprop", *SMALL],
    ["experiment=cgan_fashion_strong", "model/optimizer=rmsprop", *SMALL],
    ["model=mlp_gan", "model/loss=wgan_gp", "model/optimizer=rmsprop"],
])
def test_choosing_an_optimizer_replaces_it_whole(tiny_cfg, overrides):
    cfg = tiny_cfg(*overrides, tiny=not overrides[0].startswith("experiment="))
    for key in ("g_optimizer", "d_optimizer"):
        assert set(cfg.model[key]) == {"_target_", "_partial_", "lr", "alpha", "weight_decay"}, key
    _, opt_g, opt_d = built_optimizers(cfg)
    assert type(opt_g) is type(opt_d) is torch.optim.RMSprop


def test_wgan_gp_brings_its_adam_and_the_command_line_wins(tiny_cfg):
    _, opt_g, _ = built_optimizers(tiny_cfg("model/loss=wgan_gp"))
    assert type(opt_g) is torch.optim.Adam
    assert opt_g.defaults["lr"] == pytest.approx(1e-4) and tuple(opt_g.defaults["betas"]) == (0.0, 0.9)
    _, opt_g, _ = built_optimizers(tiny_cfg("model/loss=wgan_gp", "model/optimizer=adam"))
    assert opt_g.defaults["lr"] == pytest.approx(2e-4) and tuple(opt_g.defaults["betas"]) == (0.5, 0.999)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_config_builds_alone(tiny_cfg, name):
    cfg = tiny_cfg(f"model/optimizer={name}")
    assert cfg.model.g_optimizer == cfg.model.d_optimizer
    _, opt_g, _ = built_optimizers(cfg)
    assert type(opt_g).__name__ == cfg.model.g_optimizer._target_.rsplit(".", 1)[1]
    assert opt_g.defaults["lr"] == pytest.approx(cfg.model.g_optimizer.lr)
