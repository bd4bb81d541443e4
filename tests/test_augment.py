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

from ganlab.models.augment import AdaptiveAugment, DiffAugment
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
    augs = {f"diffaug-{p}": DiffAugment(policy=[p]) for p in ("color", "translation", "cutout")}
    return {**augs, "ada-p1": AdaptiveAugment(p=1.0, target=None)}


@pytest.mark.parametrize("name", sorted(augmentations()))
def test_gradients_reach_the_generator_through_each_augmentation(name):
    aug = augmentations()[name]
    g = TinyG()
    d = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 1))
    d(aug(g(torch.randn(8, 4)))).sum().backward()
    grad = g.fc.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


# -- ADA ------------------------------------------------------------------------------------
ALL_ADA_OPS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast", "hue", "saturation")


@pytest.mark.parametrize("channels", [1, 3])
def test_ada_at_p0_is_the_identity_and_at_p1_changes_every_image(channels):
    x = images(n=16, c=channels)
    assert torch.equal(AdaptiveAugment(p=0.0)(x), x)
    # every transform drawn but none applied: the pipeline runs and passes every image through exactly
    assert torch.equal(AdaptiveAugment(p=1.0, **{k: 0.0 for k in ALL_ADA_OPS})(x), x)
    y = AdaptiveAugment(p=1.0)(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert not (y == x).flatten(1).all(1).any()
    assert AdaptiveAugment(p=1.0)(x.bfloat16()).dtype == torch.bfloat16


def test_ada_flips_and_quarter_turns_move_whole_pixels():
    """x-flip and 90-degree rotations alone: each output is one of the 8 symmetries of its input."""
    x = images(n=32, c=3)
    only = {k: 0.0 for k in ALL_ADA_OPS if k not in ("xflip", "rotate90")}
    y = AdaptiveAugment(p=1.0, **only)(x)
    found = set()
    for xi, yi in zip(x, y):
        variants = [torch.rot90(v, k, dims=(1, 2)) for v in (xi, xi.flip(2)) for k in range(4)]
        match = [i for i, v in enumerate(variants) if torch.allclose(v, yi, atol=1e-5)]
        assert len(match) == 1
        found.add(match[0])
    assert len(found) >= 6  # the symmetries are drawn independently per image


def test_ada_colour_ops_are_what_they_say():
    x = images(n=16, c=3)
    geometric_off = {k: 0.0 for k in ALL_ADA_OPS if k not in ("brightness",)}
    y = AdaptiveAugment(p=1.0, **geometric_off)(x)
    shift = y - x  # brightness: one offset per image, added to every pixel and channel
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6) and shift.abs().max() > 0
    grey = images(n=16, c=1).expand(-1, 3, -1, -1)
    hue_only = {k: 0.0 for k in ALL_ADA_OPS if k not in ("hue", "saturation")}
    y = AdaptiveAugment(p=1.0, **hue_only)(grey)
    assert torch.allclose(y, grey, atol=1e-5)  # hue rotation and saturation leave grey pixels grey


def test_ada_p_rises_when_d_separates_and_falls_to_zero_when_it_cannot():
    """A synthetic D output: r_t = 1 (every real judged real) raises p by images / speed per
    interval; r_t = 0 (a D at chance) lowers it, and it stops at 0."""
    ada = AdaptiveAugment(p=0.0, target=0.6, speed_images=1000, interval=4)
    separable = torch.full((50,), 3.0)
    for step in range(1, 13):
        stats = ada.update(separable)
        expected = (step // 4) * 4 * 50 / 1000  # +0.2 after every 4th D step
        assert stats["aug/p"].item() == pytest.approx(expected)
    assert ada.r_t.item() == 1.0 and ada.p.item() == pytest.approx(0.6)
    chance = torch.tensor([1.0, -1.0] * 25)
    for _ in range(20):
        stats = ada.update(chance)
    assert stats["aug/r_t"].item() == 0.0 and stats["aug/p"].item() == 0.0
    assert ada.accumulator.tolist() == [0.0, 0.0, 0.0]  # 20 steps = 5 whole intervals
    # p never goes above 1; a fixed-p ADA never moves
    fast = AdaptiveAugment(p=0.9, speed_images=10, interval=1)
    fast.update(separable)
    assert fast.p.item() == 1.0
    fixed = AdaptiveAugment(p=0.3, target=None)
    fixed.update(separable)
    assert fixed.p.item() == pytest.approx(0.3)


def test_ada_p_and_accumulator_are_state_dict_buffers():
    ada = AdaptiveAugment(p=0.0, speed_images=1000, interval=4)
    for _ in range(6):
        ada.update(torch.ones(10))
    x = images(n=4)
    ada(x)  # creates the random stream
    copy = AdaptiveAugment()
    copy.load_state_dict(ada.state_dict())
    assert {"p", "r_t", "accumulator", "_extra_state"} <= set(ada.state_dict())
    assert copy.p == ada.p and copy.r_t == ada.r_t and torch.equal(copy.accumulator, ada.accumulator)
    assert torch.equal(copy(x), ada(x))  # the random stream continues where it was saved


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
    if model == "cgan":
        with open_dict(cfg):
            cfg.model.generator.num_classes = 2  # what train() derives from data.labels (two attributes)
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


NO_OPS = [f"model.augment.{k}=0" for k in ALL_ADA_OPS]


@pytest.mark.parametrize("ada", [["model.augment.target=null"], ["model.augment.p=1", *NO_OPS]],
                         ids=["p0-fixed", "p1-every-transform-off"])
def test_ada_at_p0_trains_bit_identically_to_no_augmentation(tiny_cfg, ada):
    """ADA's own random stream leaves the global one alone, so p = 0 changes nothing at all (on
    CPU the pipeline is skipped at p = 0; with every transform's multiplier at 0 it runs and
    passes the images through, as it does on a GPU at p = 0)."""
    base = ["model/loss=r1", "model.instance_noise=0.1", "generator_steps=3", *QUIET]
    _, trainer = train(tiny_cfg(*base))
    a = state(trainer.lightning_module)
    _, trainer = train(tiny_cfg(*base, "model/augment=ada", *ada))
    b = state(trainer.lightning_module)
    ada_keys = {k for k in b if k.startswith("augment.")}
    assert ada_keys == {"augment.p", "augment.r_t", "augment.accumulator", "augment._extra_state"}
    assert a.keys() == b.keys() - ada_keys
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("loss", ["bce", "hinge", "wgan_gp", "lsgan", "r1"])
def test_ada_trains_with_every_loss_and_logs_p(tiny_cfg, loss):
    cfg = tiny_cfg(f"model/loss={loss}", "model.n_critic=1", "model/augment=ada", "model.augment.speed_images=2000",
                   "generator_steps=4", *QUIET)
    metrics, trainer = train(cfg)
    gan = trainer.lightning_module
    # 4 D steps of 16 reals = one adjustment of +-64/2000 (down from 0 stays at 0)
    assert metrics["aug/p"] in (0.0, pytest.approx(0.032))
    assert metrics["aug/p"] == pytest.approx(gan.augment.p.item()) and -1 <= metrics["aug/r_t"] <= 1
    assert all(torch.isfinite(p).all() for p in gan.parameters())


@pytest.mark.parametrize("augment", ["diffaug", "ada"])
def test_augmentation_under_bf16_autocast(tiny_cfg, augment):
    cfg = tiny_cfg(f"model/augment={augment}", "trainer.precision=bf16-mixed", "generator_steps=2", *QUIET)
    metrics, trainer = train(cfg)
    assert trainer.lightning_module.generator_step == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_ada_p_and_r_t_reach_the_loggers_and_the_loss_plot(tiny_cfg, tmp_path):
    import csv

    from PIL import Image

    cfg = tiny_cfg("model/augment=ada", "model.augment.speed_images=1000", "model.augment.interval=1",
                   "generator_steps=4", "callbacks=[loss_history]", "logger=csv", "sample_every=2",
                   "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false")
    _, trainer = train(cfg)
    p_final = trainer.lightning_module.augment.p.item()
    rows = list(csv.DictReader(open(tmp_path / "run" / "losses.csv")))
    assert [int(r["generator_step"]) for r in rows] == [1, 2, 3, 4]
    p = [float(r["aug/p"]) for r in rows]
    # every D step moves p by 16/1000 (up, or down and clamped at 0)
    assert all(abs(b - a) == pytest.approx(0.016, abs=1e-6) or b == a == 0.0 for a, b in zip([0.0, *p], p))
    assert p[-1] == pytest.approx(p_final) and all(-1 <= float(r["aug/r_t"]) <= 1 for r in rows)
    assert Image.open(tmp_path / "run" / "losses.png").size[1] == 900  # a third panel for p and r_t
    logged = [r for r in csv.DictReader(open(tmp_path / "run" / "csv" / "metrics.csv")) if r.get("aug/p")]
    assert [float(r["aug/p"]) for r in logged] == pytest.approx(p)


@pytest.mark.slow
def test_ddp_all_reduces_ada_and_lecam(tmp_path):
    """2 CPU ranks (gloo): ADA's accumulator counts both ranks' reals (32 per D step, not 16),
    and p, r_t and LeCam's EMAs are the same on both ranks."""
    from test_ddp import run_ddp

    proc = run_ddp(tmp_path, "model/augment=ada", "model.augment.interval=3", "model.augment.speed_images=100",
                   "model/lecam=default", "model.lecam.start=0")
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / "probe" / f"rank{r}.pt")["state"] for r in (0, 1))
    # 4 D steps, interval 3: one adjustment done (p moved by 3 * 32 / 100), one step accumulated
    assert r0["augment.accumulator"][1:].tolist() == [32.0, 1.0]
    assert r0["augment.p"].item() in (0.0, pytest.approx(0.96))
    for k in ("augment.p", "augment.r_t", "augment.accumulator", "lecam.ema_real", "lecam.ema_fake"):
        assert torch.equal(r0[k], r1[k]), k


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augmentation_on_cuda_runs_on_the_device_without_host_syncs():
    from ganlab.models.regularizers import LeCam

    x = images(n=32).cuda().requires_grad_()
    lecam = LeCam(start=0).cuda()
    for aug in (DiffAugment().cuda(), AdaptiveAugment(p=0.5).cuda()):
        aug(x)  # the first call creates the device's random stream
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # any host round trip now raises
        try:
            y = aug(x)
            stats = aug.update(torch.randn(32, device="cuda"))
            d = y.flatten(1).mean(1)
            (d.sum() + lecam(None, None, None, None, 0, d_real=d, d_fake=-d)).backward()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        assert y.device.type == "cuda" and all(v.device.type == "cuda" for v in stats.values())
        assert x.grad is not None and torch.isfinite(x.grad).all()
        x.grad = None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("augment", ["diffaug", "ada"])
def test_augmentation_trains_on_cuda_with_bf16(tiny_cfg, augment):
    cfg = tiny_cfg("trainer=gpu", "trainer.accelerator=gpu", "trainer.precision=bf16-mixed", f"model/augment={augment}",
                   "model/lecam=default", "generator_steps=4", *QUIET)
    metrics, trainer = train(cfg)
    gan = trainer.lightning_module
    assert gan.device.type == "cuda" and gan.generator_step == 4
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    if augment == "ada":
        assert gan.augment.p.device.type == "cuda"
