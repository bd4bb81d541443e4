"""The logic of the ``trainer=gpu`` fast path, on CPU (default suite): the device-resident loader
(``device="cpu"``), the non-finite flag read without waiting, fused-optimizer selection, bf16
autocast, the compile / channels_last refusal, and exact resume through all of them.
The CUDA runs of the same path are in ``tests/test_gpu.py``."""

from __future__ import annotations

import functools
import logging

import lightning as L
import numpy as np
import pytest
import torch

from ganlab.data.device_loader import DeviceBatchLoader, device_loader
from ganlab.data.loader import ArrayBatchLoader
from ganlab.models import load_gan
from ganlab.models.finite import FiniteGuard, NonFiniteLossError
from ganlab.models.speed import Speed, build_optimizer, check_layout, wants_fused
from ganlab.train import train

# trainer=gpu with everything it turns on, but on the CPU in fp32
FAST_ON_CPU = ["trainer=gpu", "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.benchmark=null",
               "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def images(n=200, size=4):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), np.arange(n, dtype=np.int64) % 7


def epoch_rows(loader):
    """(positions in the split, flip mask) of every batch of one pass."""
    out = []
    for x, y, f in loader:
        out.append((x, y, f))
    return out


# -- the device-resident loader ----------------------------------------------------------------
def test_device_loader_order_is_seeded_covers_every_image_and_flips_half():
    x, y = images(200)
    split = np.arange(10, 190)  # 180 images, batch 16: 11 batches, 4 dropped per epoch
    make = functools.partial(DeviceBatchLoader, x, y, split, 16, device="cpu", hflip=True, seed=3)
    a, b = make(), make()
    ea, eb = epoch_rows(a), epoch_rows(b)
    assert len(ea) == len(a) == 11
    for (xa, ya, fa), (xb, yb, fb) in zip(ea, eb):  # same seed: the same batches and flips
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(fa, fb)
    assert xa.dtype == torch.uint8 and xa.device.type == "cpu" and xa.shape == (16, 3, 4, 4)
    # which cache rows came out: match each image back (all distinct at this size)
    lookup = {x[i].tobytes(): i for i in split}
    rows = [lookup[img.numpy().tobytes()] for xb_, _, _ in ea for img in xb_]
    assert len(set(rows)) == len(rows) == 176 and set(rows) <= set(split.tolist())  # each at most once
    assert [int(v) for _, yb_, _ in ea for v in yb_] == [int(y[r]) for r in rows]  # labels travel with images
    second = epoch_rows(a)  # next epoch: a new permutation
    rows2 = [lookup[img.numpy().tobytes()] for xb_, _, _ in second for img in xb_]
    assert rows2 != rows
    # every image once per epoch when nothing is dropped; flips at rate 0.5
    full = DeviceBatchLoader(x, y, np.arange(192), 16, device="cpu", hflip=True, seed=0)
    order, flips = full._epoch_plan(0)
    assert sorted(order.tolist()) == list(range(192))
    many = torch.cat([full._epoch_plan(e)[1] for e in range(20)]).float().mean().item()
    assert 0.46 < many < 0.54  # 3,840 draws: 5 sigma is +-0.04
    assert not DeviceBatchLoader(x, y, np.arange(192), 16, device="cpu", seed=0)._epoch_plan(0)[1].any()


def test_device_loader_ranks_are_disjoint_and_resume_mid_epoch():
    x, y = images(128)
    shares = [DeviceBatchLoader(x, None, np.arange(128), 8, device="cpu", seed=1, rank=r, world_size=2)._epoch_plan(4)[0]
              for r in range(2)]
    assert set(shares[0].tolist()).isdisjoint(shares[1].tolist())
    assert sorted(shares[0].tolist() + shares[1].tolist()) == list(range(128))
    a = DeviceBatchLoader(x, None, np.arange(128), 8, device="cpu", hflip=True, seed=1)
    it = iter(a)
    for _ in range(5):
        next(it)
    state = a.state_dict()
    rest = [b for b in it]
    b = DeviceBatchLoader(x, None, np.arange(128), 8, device="cpu", hflip=True, seed=1)
    b.load_state_dict(state)
    resumed = epoch_rows(b)
    assert len(resumed) == len(rest) == 11
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[2], q[2]) for p, q in zip(rest, resumed))
    assert resumed[0][1].shape == (8, 0)  # unlabelled: (B, 0) like the host loader


def test_device_cache_that_does_not_fit_falls_back_with_one_line(monkeypatch, caplog):
    x, y = images(64)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 10**9))
    with caplog.at_level(logging.WARNING, logger="ganlab.data.device_loader"):
        got = device_loader(x, y, np.arange(64), 8, device=torch.device("cuda"), fraction=0.5)
    assert got is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert "needs 0.00 GiB" in line and "0.5 x 0.00 GiB free" in line and "using the host loader" in line
    with pytest.raises(ValueError, match=r"data.device_cache must be in \(0, 1\]"):
        device_loader(x, y, np.arange(64), 8, device="cpu", fraction=1.5)
    assert isinstance(device_loader(x, y, np.arange(64), 8, device="cpu", fraction=0.5), DeviceBatchLoader)


# -- optimizers, layout, precision --------------------------------------------------------------
def test_fused_adam_only_on_cuda_and_only_when_not_configured():
    adam = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))
    assert wants_fused(adam, torch.device("cuda"))
    assert not wants_fused(adam, torch.device("cpu"))
    assert not wants_fused(functools.partial(torch.optim.Adam, foreach=False), torch.device("cuda"))
    assert not wants_fused(functools.partial(torch.optim.LBFGS), torch.device("cuda"))  # takes no `fused`
    opt = build_optimizer(adam, torch.nn.Linear(2, 2).parameters(), fused=True)
    assert not opt.defaults["fused"] and opt.defaults["lr"] == 2e-4  # CPU parameters: plain Adam
    with pytest.raises(ValueError, match="finite_check_every must be an integer >= 1"):
        Speed(finite_check_every=0)
    assert Speed.of({"_target_": "x", "fused_optimizer": True}) == Speed(fused_optimizer=True)


def test_compile_with_channels_last_is_refused_before_training(tiny_cfg):
    with pytest.raises(ValueError, match="model.compile=true cannot be combined with model.channels_last=true"):
        check_layout(True, True)
    cfg = tiny_cfg(*FAST_ON_CPU, "model.compile=true", "model.channels_last=true", "callbacks=none", "logger=[]")
    with pytest.raises(ValueError, match="Set model.channels_last=false"):
        train(cfg)


class Dtypes(L.Callback):
    """Records the dtype of D's first convolution output and G's output during training."""

    def __init__(self):
        self.seen = {}

    def on_train_start(self, trainer, gan):
        def hook(name):
            def record(module, inputs, output):
                self.seen.setdefault(name, output.dtype)
            return record
        gan.discriminator.features[0].register_forward_hook(hook("d_conv"))
        gan.generator.register_forward_hook(hook("g_out"))


def test_bf16_mixed_really_runs_in_bf16(tiny_cfg):
    probe = Dtypes()
    _, trainer = train(tiny_cfg(*FAST_ON_CPU, "trainer.precision=bf16-mixed", "generator_steps=2", "callbacks=none",
                                "logger=[]"), extra_callbacks=[probe])
    gan = trainer.lightning_module
    assert probe.seen == {"d_conv": torch.bfloat16, "g_out": torch.bfloat16}
    assert gan.generator.to_rgb.weight.dtype == torch.float32  # parameters stay fp32 under autocast
    assert isinstance(trainer.train_dataloader, DeviceBatchLoader)  # trainer=gpu: data.device_cache on
    assert gan.speed == Speed(fused_optimizer=True, finite_check_every=50)


# -- the non-finite guard, read without waiting -------------------------------------------------------
class Poison(L.Callback):
    def __init__(self, at):
        self.at = at

    def on_train_batch_end(self, trainer, gan, outputs, batch, batch_idx):
        if gan.generator_step == self.at:
            with torch.no_grad():
                gan.generator.to_rgb.bias.fill_(float("nan"))


def checkpoints(run):
    return sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))


@pytest.mark.parametrize("checkpoint_every, noticed", [(100, 9), (2, 6)])
def test_async_guard_stops_before_any_checkpoint_after_the_nan(tiny_cfg, tmp_path, checkpoint_every, noticed):
    """The loss goes NaN at step 6. Read every 4 steps: the copy queued at step 8 is read at step 9
    (no checkpoint in between); with a checkpoint due at step 6 the read before writing it fires."""
    cfg = tiny_cfg(*FAST_ON_CPU, "model.speed.finite_check_every=4", "generator_steps=20",
                   f"checkpoint_every={checkpoint_every}", "callbacks=[model_checkpoint]", "logger=[]")
    with pytest.raises(NonFiniteLossError, match=rf"non-finite discriminator loss \(nan\) at generator step 6 "
                                                 rf"\(noticed at generator step {noticed};"):
        train(cfg, extra_callbacks=[Poison(at=5)])
    run = tmp_path / "run"
    if checkpoint_every == 2:
        assert checkpoints(run) == ["gstep_000002.ckpt", "gstep_000004.ckpt", "last.ckpt"]
        assert load_gan(run / "checkpoints" / "last.ckpt").generator_step == 4
    else:  # stopped at step 9, long before the first checkpoint was due
        assert not (run / "checkpoints").exists() or checkpoints(run) == []


def test_guard_reads_the_flag_only_when_asked_and_names_the_first_bad_step():
    class Module:  # what the guard reads from the GAN
        _trainer, global_step, generator_step = None, 0, 0

    guard, gan = FiniteGuard(every=3), Module()
    one, nan, inf = torch.tensor(1.0), torch.tensor(float("nan")), torch.tensor(float("inf"))
    guard.record(1, one, one)
    guard.after_step(gan, 1)
    guard.record(2, one, inf)  # G goes bad first ...
    guard.after_step(gan, 2)   # ... nothing read yet
    guard.record(3, nan, nan)
    guard.after_step(gan, 3)   # queues the copy
    with pytest.raises(NonFiniteLossError, match=r"generator loss \(inf\) at generator step 2 \(noticed at generator step 4"):
        guard.after_step(gan, 4)
    sync = FiniteGuard(every=1)
    sync.record(7, nan, one)
    with pytest.raises(NonFiniteLossError, match=r"discriminator loss \(nan\) at generator step 7 \(optimizer step 0\)"):
        sync.after_step(gan, 7)


def test_fast_path_resumes_exactly_on_cpu(tmp_path, make_cfg):
    """Device loader (hflip), async guard and trainer=gpu's options: 8 steps == 4 + resume + 4, bitwise."""
    common = [*FAST_ON_CPU, "trainer.deterministic=true", "data.hflip=true", "model.ema_decay=0.9",
              "model.speed.finite_check_every=3", "callbacks=[model_checkpoint]", "logger=[]"]
    train(make_cfg(tmp_path / "a", "generator_steps=8", "checkpoint_every=8", *common))
    train(make_cfg(tmp_path / "b", "generator_steps=4", "checkpoint_every=4", *common))
    half = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    _, trainer = train(make_cfg(tmp_path / "b", "generator_steps=8", "checkpoint_every=8", f"ckpt_path={half}", *common))
    assert isinstance(trainer.train_dataloader, DeviceBatchLoader)
    a = load_gan(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt")
    b = load_gan(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt")
    assert a.generator_step == b.generator_step == 8
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs after resume"


def test_host_loader_unchanged_without_device_cache(tiny_cfg):
    _, trainer = train(tiny_cfg("generator_steps=1", "callbacks=none", "logger=[]"))
    assert type(trainer.train_dataloader) is ArrayBatchLoader
    assert trainer.lightning_module.speed == Speed()


@pytest.mark.slow
def test_compile_trains_tiny_networks_on_cpu(tiny_cfg):
    """Inductor on CPU (gcc): 3 steps of compiled tiny G and D took 160 s on the 2-core box."""
    metrics, trainer = train(tiny_cfg(*FAST_ON_CPU, "model.compile=true", "generator_steps=3", "callbacks=none",
                                      "logger=[]"))
    gan = trainer.lightning_module
    assert gan.generator._compiled_call_impl is not None and gan.discriminator._compiled_call_impl is not None
    assert gan.generator_step == 3
    assert all(np.isfinite(v) for v in metrics.values())
