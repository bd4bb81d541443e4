"""ADC-GAN's discriminator and loss, and transitional conditioning (issue 20)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _cgan_helpers import QUIET, TINY_DCGAN, fashion_overrides, write_fashion_like
from ganlab.models import load_gan
from ganlab.models.losses import ADCLoss
from ganlab.models.networks.conditioning import set_condition_weight
from ganlab.models.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from ganlab.models.networks.mlp import MLPDiscriminator
from ganlab.models.transition import Transition
from ganlab.train import train

ADC = ["model=cgan", *TINY_DCGAN, "model/class_loss=adc", "model/loss=hinge",
       "model.discriminator.spectral_norm=true", "model.discriminator.norm=none"]


def _labels(n=8, k=10):
    return torch.arange(n) % k


# -- ADC-GAN -------------------------------------------------------------------------------------------
def test_adc_discriminator_gives_an_unconditional_logit_and_2k_class_logits():
    torch.manual_seed(0)
    d = DCGANDiscriminator(resolution=16, channels=1, base_width=8, num_classes=10, conditioning="adc", norm="none")
    x, y = torch.randn(8, 1, 16, 16), _labels()
    logit, classes = d(x, y, with_classes=True)
    assert logit.shape == (8,) and classes.shape == (8, 20)
    assert torch.equal(d(x, y), logit)
    assert torch.equal(d(x, (y + 3) % 10), logit)  # the adversarial logit ignores the label
    with pytest.raises(ValueError, match="label_kind='class'"):
        DCGANDiscriminator(resolution=16, channels=1, num_classes=3, label_kind="multi_hot", conditioning="adc")
    mlp = MLPDiscriminator(resolution=8, channels=1, hidden=[16], num_classes=4, conditioning="adc")
    assert mlp(torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 3]), with_classes=True)[1].shape == (3, 8)


def test_adc_loss_matches_its_definition():
    real, fake, y = torch.randn(6, 8), torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    loss = ADCLoss(weight=0.5)
    d = 0.5 * (F.cross_entropy(real, y) + F.cross_entropy(fake, y + 4))
    g = 0.5 * (F.cross_entropy(fake, y) - F.cross_entropy(fake, y + 4))
    assert torch.allclose(loss.discriminator(real, fake, y), d)
    assert torch.allclose(loss.generator(fake, y), g)
    # G's term falls when the fakes look like real class y rather than generated class y
    good = torch.zeros(6, 8)
    good[torch.arange(6), y] = 5.0
    bad = torch.zeros(6, 8)
    bad[torch.arange(6), y + 4] = 5.0
    assert loss.generator(good, y) < 0 < loss.generator(bad, y)


def test_adc_without_its_loss_is_refused(make_cfg, tmp_path):
    root = write_fashion_like(tmp_path / "fm")
    cfg = make_cfg(tmp_path, *ADC, *fashion_overrides(root), "data.resolution=16", "model.class_loss=null",
                   "generator_steps=1", *QUIET, tiny=False)
    with pytest.raises(Exception, match="go together"):
        train(cfg)


def test_adc_gan_trains_and_keeps_gradients_to_the_generator(make_cfg, tmp_path):
    """A G step with only the ADC term moves G: D's classifier head passes gradients to every G weight."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    root = write_fashion_like(tmp_path / "fm")
    cfg = make_cfg(tmp_path, *ADC, *fashion_overrides(root), "data.resolution=16", "model.generator.num_classes=10",
                   tiny=False)
    gan = instantiate(OmegaConf.to_container(cfg.model, resolve=True), _recursive_=False)
    z, y = torch.randn(8, 16), _labels()
    fake = gan.generator(z, y)
    _, classes = gan.discriminator(fake, y, with_classes=True)
    gan.class_loss.generator(classes, y).backward()
    grads = {n: p.grad for n, p in gan.generator.named_parameters()}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values()), \
        [n for n, g in grads.items() if g is None or g.abs().sum() == 0]


def _state(path):
    gan = load_gan(path)
    return gan.generator_step, gan.state_dict()


@pytest.mark.parametrize("extra", [[], ["model/transition=linear", "model.transition.start=2", "model.transition.end=6"]],
                         ids=["adc", "adc+transition"])
def test_adc_gan_resumes_exactly(make_cfg, tmp_path, extra):
    """6 steps straight == 3 steps, then ``ckpt_path=auto`` in the same run folder, to 6 (with a
    transition, the resume lands inside its ramp). The resumed launch has another seed, so a run
    that started afresh instead of resuming would not match."""
    root = write_fashion_like(tmp_path / "fm")
    common = [*ADC, *fashion_overrides(root), "data.resolution=16", "trainer.deterministic=true",
              "model.ema_decay=0.9", "callbacks=[model_checkpoint]", "logger=[]", *extra]
    train(make_cfg(tmp_path / "a", *common, "generator_steps=6", "checkpoint_every=6", tiny=False))
    train(make_cfg(tmp_path / "b", *common, "generator_steps=3", "checkpoint_every=3", tiny=False))
    train(make_cfg(tmp_path / "b", *common, "generator_steps=6", "checkpoint_every=6", "ckpt_path=auto", "seed=7",
                   tiny=False))
    (g_a, s_a), (g_b, s_b) = (_state(tmp_path / r / "run" / "checkpoints" / "last.ckpt") for r in ("a", "b"))
    assert g_a == g_b == 6
    assert any("classify" in k for k in s_a)
    for k in s_a:
        assert torch.equal(s_a[k], s_b[k]), f"{k} differs after resume"


# -- transitional conditioning ---------------------------------------------------------------------------
def test_transition_weight_ramps_from_zero_to_one():
    t = Transition(start=10, end=20)
    assert [t.weight(s) for s in (0, 10, 15, 20, 30)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert Transition(5, 5).weight(4) == 0.0 and Transition(5, 5).weight(5) == 1.0
    with pytest.raises(ValueError):
        Transition(start=10, end=5)


NETS = [
    (DCGANGenerator, dict(z_dim=16, resolution=16, channels=1, base_width=8, num_classes=10, conditioning="concat+cbn")),
    (DCGANGenerator, dict(z_dim=16, resolution=16, channels=1, base_width=8, num_classes=10, conditioning="concat")),
    (DCGANDiscriminator, dict(resolution=16, channels=1, base_width=8, num_classes=10, conditioning="projection",
                              norm="none")),
    (DCGANDiscriminator, dict(resolution=16, channels=1, base_width=8, num_classes=10, conditioning="concat",
                              norm="none")),
]


@pytest.mark.parametrize("cls,kw", NETS, ids=["G concat+cbn", "G concat", "D projection", "D concat"])
def test_condition_weight_zero_is_unconditional_and_one_is_the_plain_network(cls, kw):
    torch.manual_seed(0)
    net = cls(**kw).eval()
    with torch.no_grad():  # label paths away from their zero init, so the labels matter
        for name, p in net.named_parameters():
            if "gamma" in name or "beta" in name or "project" in name:
                p.normal_(0, 0.5)
    torch.manual_seed(1)
    x = torch.randn(8, 16) if cls is DCGANGenerator else torch.randn(8, 1, 16, 16)
    y, other = _labels(), (_labels() + 5) % 10
    plain = net(x, y)
    assert not torch.allclose(plain, net(x, other))  # conditional: labels change the output
    set_condition_weight(net, 0.0)
    assert torch.equal(net(x, y), net(x, other))  # exactly unconditional
    set_condition_weight(net, 0.5)
    assert not torch.allclose(net(x, y), net(x, other))
    set_condition_weight(net, 1.0)
    assert torch.equal(net(x, y), plain)  # fully conditional: the plain network, bit for bit


def test_transitional_training_is_unconditional_before_start_and_conditional_after_end(make_cfg, tmp_path):
    """In a real run: the weight the GAN applies follows the schedule, before ``start`` G's samples
    and D's outputs do not depend on the labels, after ``end`` they are the plain conditional network's."""
    root = write_fashion_like(tmp_path / "fm")
    common = ["model=cgan", *TINY_DCGAN, *fashion_overrides(root), "data.resolution=16",
              "model.generator.conditioning=concat+cbn", "model.discriminator.conditioning=projection",
              "model.discriminator.norm=none", "model/transition=linear", "callbacks=[model_checkpoint]",
              "logger=[]"]
    for steps, start, end in ((3, 4, 8), (5, 1, 4)):
        run = tmp_path / f"s{steps}"
        train(make_cfg(run, *common, f"generator_steps={steps}", f"checkpoint_every={steps}",
                       f"model.transition.start={start}", f"model.transition.end={end}", tiny=False))
        gan = load_gan(run / "run" / "checkpoints" / "last.ckpt")
        z, y, other = torch.randn(8, 16), _labels(), (_labels() + 5) % 10
        x = gan.sample(z, y, ema=False)
        d = gan.discriminator.eval()
        with torch.no_grad():
            if steps < start:
                assert gan.condition_weight == 0.0
                assert torch.equal(x, gan.sample(z, other, ema=False))
                assert torch.equal(gan.sample(z, y), gan.sample(z, other))  # the EMA generator too
                assert torch.equal(d(x, y), d(x, other))
            else:
                assert gan.condition_weight == 1.0
                assert not torch.allclose(x, gan.sample(z, other, ema=False))
                set_condition_weight(gan.generator, 1.0)
                set_condition_weight(d, 1.0)
                gan.transition = None  # the plain conditional network gives the same outputs
                assert torch.equal(gan.sample(z, y, ema=False), x)


def test_projection_pool_mean_divides_the_class_term_by_the_map_size():
    torch.manual_seed(0)
    kw = dict(resolution=16, channels=1, base_width=8, num_classes=10, conditioning="projection", norm="none")
    d_sum = DCGANDiscriminator(**kw).eval()
    d_mean = DCGANDiscriminator(**kw, projection_pool="mean").eval()
    d_mean.load_state_dict(d_sum.state_dict())
    x, y = torch.randn(4, 1, 16, 16), _labels(4)
    plain = d_sum.to_logit(d_sum.features(x)).flatten()
    area = d_sum.features(x).shape[2] * d_sum.features(x).shape[3]
    torch.testing.assert_close(d_mean(x, y) - plain, (d_sum(x, y) - plain) / area)
    with pytest.raises(ValueError, match="projection_pool"):
        DCGANDiscriminator(**kw, projection_pool="max")
