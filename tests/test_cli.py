"""`python -m ganlab.train` end to end in a subprocess: the run folder has everything a user
expects, and config mistakes get Hydra's message rather than a deep traceback."""

import csv
import os
import subprocess
import sys

import torch
from PIL import Image

from ganlab.models import load_gan

TINY = [
    "data.num_images=96", "data.resolution=16", "data.batch_size=16",
    "model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16",
    "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "generator_steps=6", "sample_every=2", "checkpoint_every=3",
]


def run_train(tmp_path, *overrides):
    env = {**os.environ, "GANLAB_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "ganlab.train", f"hydra.run.dir={tmp_path / 'run'}",
           f"paths.root_dir={tmp_path}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_cli_run_folder(tmp_path):
    proc = run_train(tmp_path, *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / ".hydra" / "config.yaml").read_text().count("generator_steps: 6") == 1
    grids = sorted(p.name for p in (run / "samples").glob("step_*.png"))
    assert grids == ["step_000002.png", "step_000004.png", "step_000006.png"]
    assert Image.open(run / "samples" / "real.png").size == Image.open(run / "samples" / grids[0]).size
    gif = Image.open(run / "progress.gif")
    assert gif.n_frames == 3
    rows = list(csv.DictReader(open(run / "losses.csv")))
    assert [int(r["generator_step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(float(r["loss/d"]) > 0 for r in rows)
    assert Image.open(run / "losses.png").size[0] > 100
    logged = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    assert len(logged) == 6 and all(float(r["loss/g"]) > 0 for r in logged)
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["gstep_000003.ckpt", "gstep_000006.ckpt", "last.ckpt"]
    gan = load_gan(run / "checkpoints" / "last.ckpt")
    assert gan.generator_step == 6
    assert gan.sample(gan.noise(2)).shape == (2, 3, 16, 16)


def test_nonfinite_loss_exits_nonzero_with_message(tmp_path):
    # plain SGD at lr=100 blows the discriminator up within a few steps
    proc = run_train(tmp_path, *TINY, "model.d_optimizer._target_=torch.optim.SGD", "~model.d_optimizer.betas",
                     "model.d_optimizer.lr=100", "generator_steps=50", "checkpoint_every=1")
    assert proc.returncode == 1
    assert "non-finite" in proc.stderr + proc.stdout
    gan = load_gan(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(v).all() for v in gan.state_dict().values() if v.is_floating_point())


def test_unknown_experiment_and_key_get_hydra_messages(tmp_path):
    proc = run_train(tmp_path, "experiment=does_not_exist")
    assert proc.returncode != 0
    assert "Could not find 'experiment/does_not_exist'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_train(tmp_path, "model.no_such_key=1")
    assert proc.returncode != 0 and "Could not override 'model.no_such_key'" in proc.stderr
