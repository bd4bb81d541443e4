"""`python -m ganlab.train` end to end in a subprocess: the run folder has everything a user
expects, the terminal shows nothing a user cannot act on, and user mistakes get one message
rather than a deep traceback."""

import csv
import os
import re
import subprocess
import sys

import torch
from PIL import Image

from ganlab.models import load_gan

TINY = [
    "data.source.num_images=96", "data.resolution=16", "data.batch_size=16",
    "model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16",
    "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "generator_steps=6", "sample_every=2", "checkpoint_every=3",
]


def run_train(tmp_path, *overrides):
    env = {**os.environ, "GANLAB_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "ganlab.train", f"hydra.run.dir={tmp_path / 'run'}",
           f"paths.root_dir={tmp_path}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


# library messages ganlab silences (ganlab.console.quiet_library_noise, ganlab.callbacks.model_summary)
SILENCED = ["litlogger", "_pytree", "is deprecated", "ModelCheckpoint with manual optimization", "FLOPs",
            "Trainer already configured", "Epoch 0/-2"]


def test_cli_run_folder(tmp_path):
    # a wall-clock budget is a plain key (no +/++), far above what the run needs
    proc = run_train(tmp_path, *TINY, "trainer.max_time=00:00:30:00")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    shown = proc.stdout + proc.stderr
    assert [m for m in SILENCED if m in shown] == []
    assert "Traceback" not in shown
    # the bar counts generator steps against the run's total (not batches against max_steps=12)
    assert re.search(r"G step .* 6/6 ", proc.stdout), proc.stdout[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"finished at generator step 6: run folder {run}; samples {run / 'samples'}; "
                    f"last checkpoint {run / 'checkpoints' / 'last.ckpt'}")
    # the run's log: ganlab's own lines and Lightning's, with their logger names
    log_lines = (run / "train.log").read_text().splitlines()
    assert any(line.endswith(f"[__main__][INFO] - run folder: {run}") for line in log_lines)
    assert any("[lightning.fabric.utilities.seed][INFO] - Seed set to 42" in line for line in log_lines)
    assert log_lines[-1].endswith(last)
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


def test_user_errors_print_one_message_and_exit_nonzero(tmp_path):
    proc = run_train(tmp_path, "data=folder", f"data.root={tmp_path / 'nowhere'}", "generator_steps=2")
    assert proc.returncode == 1
    assert f"ERROR: data root does not exist: {tmp_path / 'nowhere'}" in proc.stderr
    assert "ganlab understands these layouts" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = run_train(tmp_path, "model.n_critic=0", "generator_steps=2")  # a bad option value
    assert proc.returncode == 1
    assert "n_critic must be >= 1, got 0" in proc.stderr and "Traceback" not in proc.stderr
    empty = tmp_path / "empty"  # a root that exists but holds no data set (the wrong layout)
    empty.mkdir()
    proc = run_train(tmp_path, "data=celeba", f"data.root={empty}", "generator_steps=2")
    assert proc.returncode == 1
    assert f"ERROR: data root is an empty folder: {empty}" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    bad = tmp_path / "bad.ckpt"  # an unreadable checkpoint: exit 2, the message alone
    bad.write_bytes(b"not a checkpoint")
    proc = run_train(tmp_path, f"ckpt_path={bad}")
    assert proc.returncode == 2
    assert f"ERROR: checkpoint {bad} is damaged" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_full_error_env_adds_the_traceback_and_keeps_the_exit_code(tmp_path):
    # an unreadable checkpoint: exit 2 and ganlab's message as without HYDRA_FULL_ERROR (tests/test_faults.py),
    # plus the traceback
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, "-m", "ganlab.train", f"hydra.run.dir={tmp_path / 'run'}",
                           f"ckpt_path={bad}"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert f"ERROR: checkpoint {bad} is damaged" in proc.stderr
    assert "Traceback" in proc.stderr and "CheckpointError" in proc.stderr
