"""Resume is exact: N steps straight == N/2 steps, stop, resume from last.ckpt, N/2 steps."""

import torch

from ganlab.models import load_gan
from ganlab.train import train

# 91 training images / batch 16 = 5 batches per epoch: 8 generator steps cross an epoch
# boundary and the checkpoint at step 4 sits mid-epoch. Flip augmentation, instance noise
# and R1 exercise every random stream (data order, flips, noise, penalties).
COMMON = [
    "trainer.deterministic=true",
    "data.hflip=true",
    "model.instance_noise=0.1",
    "model/loss=r1",
    "model.ema_decay=0.9",
    "callbacks=[model_checkpoint]",
    "logger=[]",
]


def state(ckpt_path):
    gan = load_gan(ckpt_path)
    return gan.generator_step, gan.discriminator_step, gan.state_dict()


def test_resume_equals_straight_run(tmp_path, make_cfg):

    straight = make_cfg(tmp_path / "a", "generator_steps=8", "checkpoint_every=8", *COMMON)
    train(straight)

    first = make_cfg(tmp_path / "b", "generator_steps=4", "checkpoint_every=4", *COMMON)
    train(first)
    half = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    assert load_gan(half).generator_step == 4
    second = make_cfg(tmp_path / "b", "generator_steps=8", "checkpoint_every=8", f"ckpt_path={half}", *COMMON)
    train(second)

    g_a, d_a, s_a = state(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt")
    g_b, d_b, s_b = state(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt")
    assert (g_a, d_a) == (g_b, d_b) == (8, 8)
    assert s_a.keys() == s_b.keys()
    assert any(k.startswith("generator_ema.") for k in s_a)
    for k in s_a:
        assert torch.equal(s_a[k], s_b[k]), f"{k} differs after resume"
