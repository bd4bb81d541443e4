"""CUDA paths: mixed precision through manual_backward, channels_last, torch.compile, and the
trainer=gpu fast path (device-resident data, fused Adam, the asynchronous non-finite guard, bf16).
Skipped without a GPU (CI has none); run on a GPU machine with `pytest -m gpu`."""

import pytest
import torch

from ganlab.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
QUIET = ["trainer.accelerator=gpu", "callbacks=none", "logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
WITH_CHECKPOINTS = [o for o in QUIET if o != "callbacks=none"] + ["callbacks=[model_checkpoint]"]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("loss", ["bce", "wgan_gp"])
def test_mixed_precision_trains(tiny_cfg, precision, loss):
    cfg = tiny_cfg("trainer=gpu", f"trainer.precision={precision}", f"model/loss={loss}", "model.n_critic=1",
                   "generator_steps=5", *QUIET)
    metrics, trainer = train(cfg)
    gan = trainer.lightning_module
    assert gan.device.type == "cuda" and gan.generator_step == 5
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert all(torch.isfinite(p).all() for p in gan.parameters())
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    assert (scaler is not None) == (precision == "16-mixed")  # fp16 loss scaling through manual_backward
    # params stay fp32 under autocast; samples come back in [-1, 1]
    assert gan.generator.to_rgb.weight.dtype == torch.float32
    x = gan.sample(gan.noise(4))
    assert x.abs().max() <= 1.0


@pytest.mark.parametrize("flag", ["channels_last", "compile"])
def test_channels_last_or_compile(tiny_cfg, flag):
    cfg = tiny_cfg("trainer=gpu", f"model.{flag}=true", "generator_steps=3", *QUIET)
    metrics, trainer = train(cfg)
    gan = trainer.lightning_module
    assert gan.generator_step == 3
    if flag == "channels_last":
        conv = gan.discriminator.features[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


# -- the trainer=gpu fast path (its logic is tested on CPU in tests/test_gpu_cpu.py) ----------------
def test_fast_path_trains_on_device_with_fused_adam_in_bf16(tiny_cfg):
    from test_gpu_cpu import Dtypes

    from ganlab.data.device_loader import DeviceBatchLoader

    probe = Dtypes()
    metrics, trainer = train(tiny_cfg("trainer=gpu", "generator_steps=12", *QUIET), extra_callbacks=[probe])
    gan = trainer.lightning_module
    loader = trainer.train_dataloader
    assert isinstance(loader, DeviceBatchLoader) and loader.device_images.device.type == "cuda"
    assert all(opt.defaults["fused"] for opt in (o.optimizer for o in gan.optimizers()))
    assert probe.seen == {"d_conv": torch.bfloat16, "g_out": torch.bfloat16}
    assert gan.generator_step == 12 and all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_fast_path_resumes_bitwise(tmp_path, make_cfg):
    """Deterministic algorithms (Lightning sets CUBLAS_WORKSPACE_CONFIG), bf16, fused Adam, device loader
    with flips: 8 steps straight == 4 + resume + 4, bitwise."""
    from ganlab.models import load_gan

    common = ["trainer=gpu", "trainer.deterministic=true", "trainer.benchmark=false", "data.hflip=true",
              "model.ema_decay=0.9", *WITH_CHECKPOINTS]
    train(make_cfg(tmp_path / "a", "generator_steps=8", "checkpoint_every=8", *common))
    train(make_cfg(tmp_path / "b", "generator_steps=4", "checkpoint_every=4", *common))
    half = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    train(make_cfg(tmp_path / "b", "generator_steps=8", "checkpoint_every=8", f"ckpt_path={half}", *common))
    a = load_gan(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt").state_dict()
    b = load_gan(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt").state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"


def test_fast_path_non_finite_guard_fires(tiny_cfg, tmp_path):
    from test_gpu_cpu import Poison, checkpoints

    from ganlab.models.gan import NonFiniteLossError

    cfg = tiny_cfg("trainer=gpu", "model.speed.finite_check_every=4", "generator_steps=40", "checkpoint_every=2",
                   *WITH_CHECKPOINTS)
    with pytest.raises(NonFiniteLossError, match=r"non-finite discriminator loss \(nan\) at generator step 6 "):
        train(cfg, extra_callbacks=[Poison(at=5)])
    assert checkpoints(tmp_path / "run") == ["gstep_000002.ckpt", "gstep_000004.ckpt", "last.ckpt"]
