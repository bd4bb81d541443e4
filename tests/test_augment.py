"""Discriminator augmentation: DiffAugment's ops keep shape, dtype and range and draw
independent parameters per image; gradients reach G through every augmentation; D sees the
augmented images in the D step, the G step and the regularizers; ``augment=none`` trains
bit-for-bit like a model built without the parameter."""

import hydra
import lightning as L
import pytest
import torch
from omegaconf import open_dict
from torch import nn

from ganlab.models.augment import DiffAugment
from ganlab.models.augment import diffaugment as ops
from ganlab.train import train
from _cgan_helpers import FACES_MULTI_HOT, TINY_DCGAN

QUIET = ["callbacks=none", "logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def images(n=8, c=3, size=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, size, size, generator=g) * 2 - 1).to(dtype)


def stream(seed=1):
    return torch.Generator().manual_seed(seed)


# -- DiffAugment ops ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels", [1, 3])
def test_diffaugment_ops_keep_shape_dtype_and_range(dtype, channels):
    x = images(c=channels, dtype=dtype)
    for op in (ops.brightness, ops.saturation, ops.contrast, ops.translate, ops.cutout):
        y = op(x, stream())
        assert y.shape == x.shape and y.dtype == x.dtype, op.__name__
    xf = x.float()
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    # brightness: one offset per image, within +-0.5
    shift = ops.brightness(x, stream()).float() - xf
    assert (shift - shift[:, :1, :1, :1]).abs().max() <= tol and shift.abs().max() <= 0.5 + tol
    # saturation keeps each pixel's channel mean, contrast each image's mean
    assert torch.allclose(ops.saturation(x, stream()).float().mean(1), xf.mean(1), atol=tol)
    assert torch.allclose(ops.contrast(x, stream()).float().mean((1, 2, 3)), xf.mean((1, 2, 3)), atol=tol)
    # translation and cutout only move or zero pixels: values stay in [-1, 1]
    for op in (ops.translate, ops.cutout):
        y = op(x, stream())
        assert y.min() >= -1 and y.max() <= 1
    # the whole policy on a bf16 / fp32 batch: colour stays within the documented bounds
    y = DiffAugment()(x).float()
    assert torch.isfinite(y).all() and y.abs().max() <= 1 + 0.5 + 4 * 1.5


def test_translation_shifts_whole_pixels_and_cutout_zeroes_one_square():
    x = images(n=16, c=2, size=16)
    y = ops.translate(x, stream(), ratio=0.25)
    for xi, yi in zip(x, y):
        # find the shift: some (dy, dx) in [-4, 4]^2 maps x onto y exactly where y is not padding
        hits = []
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                ref = torch.zeros_like(xi)
                src = xi[:, max(0, -dy):16 - max(0, dy), max(0, -dx):16 - max(0, dx)]
                ref[:, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
                hits.append(torch.equal(ref, yi))
        assert sum(hits) == 1
    y = ops.cutout(x, stream(), ratio=0.5)
    zeroed = (y == 0).all(dim=1)  # (n, h, w)
    for xi, yi, zi in zip(x, y, zeroed):
        assert torch.equal(yi[:, ~zi], xi[:, ~zi])  # untouched outside the square
        rows, cols = zi.any(1).nonzero(), zi.any(0).nonzero()
        assert 0 < zi.sum() <= 64 and zi.sum() == len(rows) * len(cols)  # one (clipped) 8x8 square
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)


def test_diffaugment_parameters_differ_per_image_and_policy_is_checked():
    x = images(n=1).expand(16, -1, -1, -1)
    for policy in ("color", "translation", "cutout"):
        y = DiffAugment(policy=[policy])(x)
        distinct = {tuple(yi.flatten().tolist()) for yi in y}
        assert len(distinct) >= 8, policy  # independent draws per image
    with pytest.raises(ValueError, match="policy .*'flip'"):
        DiffAugment(policy=["flip"])
    with pytest.raises(ValueError, match="translation strength"):
        DiffAugment(translation=1.5)


# -- gradients reach G ----------------------------------------------------------------------
class TinyG(nn.Module):
    def __init__(self, channels=3, size=16):
        super().__init__()
        self.fc = nn.Linear(4, channels * size * size)
        self.shape = (channels, size, size)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, *self.shape)


def augmentations():
    return {f"diffaug-{p}": DiffAugment(policy=[p]) for p in ("color", "translation", "cutout")}


@pytest.mark.parametrize("name", sorted(augmentations()))
def test_gradients_reach_the_generator_through_each_augmentation(name):
    aug = augmentations()[name]
    g = TinyG()
    d = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 1))
    d(aug(g(torch.randn(8, 4)))).sum().backward()
    grad = g.fc.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


# -- the GAN loop ---------------------------------------------------------------------------
class RecordD(L.Callback):
    """Record every image batch the discriminator sees."""

    def __init__(self):
        self.seen = []

    def on_train_start(self, trainer, pl_module):
        pl_module.discriminator.register_forward_pre_hook(lambda m, args: self.seen.append(args[0].detach().clone()))


def test_the_discriminator_sees_augmented_images_everywhere(tiny_cfg):
    """D step (real, fake), R1 (real) and G step: every batch D sees has DiffAugment's cutout squares."""
    cfg = tiny_cfg("model/loss=r1", "model.regularizers.0.every=1", "model/augment=diffaug",
                   "model.augment.policy=[cutout]", "generator_steps=2", *QUIET)
    rec = RecordD()
    train(cfg, extra_callbacks=[rec])
    assert len(rec.seen) == 2 * 4  # per step: real, fake, R1 on real, G step
    for x in rec.seen:
        zero_images = (x == 0).all(dim=1).flatten(1).sum(1)
        assert (zero_images >= 16).all()  # every image has its 4x4 (or clipped) square


def state(gan):
    return {k: v.clone() for k, v in gan.state_dict().items()}


@pytest.mark.parametrize("model", ["dcgan", "mlp_gan"])
def test_augment_none_is_bit_identical_to_no_parameter(tiny_cfg, model):
    base = [f"model={model}", "model/loss=r1", "model.instance_noise=0.1", "generator_steps=3", *QUIET]
    metrics_a, trainer = train(tiny_cfg(*base, "model/augment=none"))
    a = state(trainer.lightning_module)
    cfg = tiny_cfg(*base)
    with open_dict(cfg):
        del cfg.model["augment"]  # GAN(...) without the argument: the code path of before
    metrics_b, trainer = train(cfg)
    b = state(trainer.lightning_module)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics_a == metrics_b


@pytest.mark.parametrize("model", ["dcgan", "mlp_gan", "cgan"])
def test_diffaug_trains_every_model(tiny_cfg, model):
    """The MLP D flattens the augmented image; a conditional D gets its labels untouched."""
    extra = [*TINY_DCGAN, *FACES_MULTI_HOT] if model == "cgan" else []
    cfg = tiny_cfg(f"model={model}", "model/augment=diffaug", "generator_steps=2", *extra, *QUIET)
    L.seed_everything(cfg.seed)
    fresh = hydra.utils.instantiate(cfg.model)
    labels_seen = []

    class Attach(L.Callback):
        def on_train_start(self, trainer, pl_module):
            pl_module.discriminator.register_forward_pre_hook(lambda m, args: labels_seen.append(args[1]))

    metrics, trainer = train(cfg, extra_callbacks=[Attach()])
    gan = trainer.lightning_module
    assert isinstance(gan.augment, DiffAugment)
    moved = [p.detach() - q.detach() for p, q in zip(gan.generator.parameters(), fresh.generator.parameters())]
    assert max(m.abs().max() for m in moved) > 1e-6
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    if model == "cgan":  # multi-hot attribute labels reach D as they came from the data
        assert all(lab is not None and lab.shape == (16, 2) and set(lab.unique().tolist()) <= {0.0, 1.0}
                   for lab in labels_seen)
