"""Every optimizer config is a complete pair that replaces the others (no keys merged in from a
loss or an experiment); a loss config chooses the loss and its own constraint, nothing else; the
WGAN recipes (experiment=wgan / wgan_gp) are the papers' (Arjovsky et al. 2017, Gulrajani et al. 2017)."""

from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF

OPTIMIZERS = sorted(p.stem for p in (Path(CONF) / "model" / "optimizer").glob("*.yaml"))
LOSSES = sorted(p.stem for p in (Path(CONF) / "model" / "loss").glob("*.yaml"))
# what a loss config may set: the loss, its regularizers, and WGAN's weight clipping (its Lipschitz
# constraint, as the penalty is WGAN-GP's)
LOSS_KEYS = {"loss", "regularizers", "d_weight_clip"}


# experiments compose their own data config: only the networks are made small
SMALL = ["model.generator.base_width=8", "model.discriminator.base_width=8", "data.resolution=16"]


def built_optimizers(cfg):
    gen = cfg.model.generator
    if "num_classes" in gen and gen.num_classes is None:  # conditional: train() takes it from the data
        gen.num_classes = 10
    gan = hydra.utils.instantiate(cfg.model)
    (opt_g, opt_d), _ = gan.configure_optimizers()
    return gan, opt_g, opt_d


def changed_keys(a, b, prefix="") -> set[str]:
    """Dotted keys whose values differ between two plain config trees."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set().union(*(changed_keys(a.get(k), b.get(k), f"{prefix}{k}.") for k in a.keys() | b.keys()))
    return set() if a == b else {prefix.rstrip(".")}


@pytest.mark.parametrize("model", ["dcgan", "mlp_gan"])
@pytest.mark.parametrize("loss", LOSSES)
def test_a_loss_choice_changes_only_the_loss(tiny_cfg, model, loss):
    """model/loss=NAME leaves the optimizers, n_critic and both networks as they were."""
    def model_node(*extra):
        return OmegaConf.to_container(tiny_cfg(f"model={model}", *extra).model, resolve=True)

    changed = {k.split(".")[0] for k in changed_keys(model_node(), model_node(f"model/loss={loss}"))}
    assert changed <= LOSS_KEYS, f"model/loss={loss} also changed {sorted(changed - LOSS_KEYS)}"
    text = (Path(CONF) / "model" / "loss" / f"{loss}.yaml").read_text().splitlines()
    assert text[0] == "# @package model"  # not _global_: a loss config cannot reach other groups


def test_gradient_penalty_with_a_batch_norm_critic_warns(tiny_cfg):
    with pytest.warns(UserWarning, match="experiment=wgan_gp"):
        hydra.utils.instantiate(tiny_cfg("model/loss=wgan_gp").model)  # DCGAN's D has batch norm
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hydra.utils.instantiate(tiny_cfg("experiment=wgan_gp").model)  # layer norm: no warning
        hydra.utils.instantiate(tiny_cfg("model/loss=r1").model)  # other penalties: no warning


def test_wgan_gp_recipe_is_the_papers(tiny_cfg):
    gan, opt_g, opt_d = built_optimizers(tiny_cfg("experiment=wgan_gp"))
    for opt in (opt_g, opt_d):
        assert type(opt) is torch.optim.Adam
        assert opt.defaults["lr"] == pytest.approx(1e-4) and tuple(opt.defaults["betas"]) == (0.0, 0.9)
    assert gan.n_critic == 5 and gan.d_weight_clip is None
    assert [type(r).__name__ for r in gan.regularizers] == ["GradientPenalty"] and gan.regularizers[0].weight == 10
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gan.discriminator.modules())
    assert any(isinstance(m, torch.nn.LayerNorm | torch.nn.GroupNorm) for m in gan.discriminator.modules())


def test_original_wgan_recipe_is_the_papers(tiny_cfg):
    # the README's "original WGAN (weight clipping)" line
    gan, opt_g, opt_d = built_optimizers(tiny_cfg("experiment=wgan"))
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
    ["experiment=wgan_gp", "model/optimizer=rmsprop"],
    ["experiment=wgan", "model/optimizer=rmsprop"],
    ["experiment=sngan_celeba", "model/optimizer=rmsprop", *SMALL],
    ["experiment=cgan_fashion_strong", "model/optimizer=rmsprop", *SMALL],
    ["model=mlp_gan", "experiment=wgan_gp", "model/optimizer=rmsprop"],
])
def test_choosing_an_optimizer_replaces_it_whole(tiny_cfg, overrides):
    cfg = tiny_cfg(*overrides, tiny="experiment=sngan_celeba" not in overrides
                   and "experiment=cgan_fashion_strong" not in overrides)
    for key in ("g_optimizer", "d_optimizer"):
        assert set(cfg.model[key]) == {"_target_", "_partial_", "lr", "alpha", "weight_decay"}, key
    _, opt_g, opt_d = built_optimizers(cfg)
    assert type(opt_g) is type(opt_d) is torch.optim.RMSprop


def test_wgan_gp_experiment_brings_its_adam_and_the_command_line_wins(tiny_cfg):
    _, opt_g, _ = built_optimizers(tiny_cfg("model/loss=wgan_gp"))  # the loss alone: the model's own Adam
    assert opt_g.defaults["lr"] == pytest.approx(2e-4) and tuple(opt_g.defaults["betas"]) == (0.5, 0.999)
    _, opt_g, _ = built_optimizers(tiny_cfg("experiment=wgan_gp", "model/optimizer=adam"))
    assert opt_g.defaults["lr"] == pytest.approx(2e-4) and tuple(opt_g.defaults["betas"]) == (0.5, 0.999)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_config_builds_alone(tiny_cfg, name):
    cfg = tiny_cfg(f"model/optimizer={name}")
    assert cfg.model.g_optimizer == cfg.model.d_optimizer
    _, opt_g, _ = built_optimizers(cfg)
    assert type(opt_g).__name__ == cfg.model.g_optimizer._target_.rsplit(".", 1)[1]
    assert opt_g.defaults["lr"] == pytest.approx(cfg.model.g_optimizer.lr)
