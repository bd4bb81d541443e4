"""CUDA paths: mixed precision through manual_backward, channels_last, torch.compile.
Skipped without a GPU (CI has none); run on a GPU machine with `pytest -m gpu`."""

import pytest
import torch

from ganlab.train import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
QUIET = ["trainer.accelerator=gpu", "callbacks=none", "logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


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
