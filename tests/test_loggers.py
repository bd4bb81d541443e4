"""Loggers: `logger=many` (CSV + TensorBoard + wandb) logs the same scalars and images everywhere;
wandb runs offline without credentials (never waiting for a login) and is read back from its run
file; conditional models get per-class grids."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from _wandb_records import offline_runs, summarize
from ganlab.loggers import resolve_offline, run_name, swept_keys, wandb_credentials_available

TINY = [
    "data.source.num_images=96", "data.resolution=16", "data.batch_size=16",
    "model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16",
    "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "generator_steps=4", "sample_every=2",
    "checkpoint_every=4", "callbacks.rich_progress_bar=null",
]


def _png(path_or_bytes) -> np.ndarray:
    import io

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return np.asarray(Image.open(src).convert("RGB"))


def test_many_loggers_same_scalars_and_images(tmp_path):
    # no credentials and no WANDB_MODE: ganlab must pick offline by itself
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"GANLAB_CACHE": str(tmp_path / "cache"), "NETRC": str(tmp_path / "no-netrc"), "MPLBACKEND": "Agg",
                "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache")})
    env.pop("GANLAB_WANDB_OFFLINE", None)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "ganlab.train", f"hydra.run.dir={run}", f"paths.root_dir={tmp_path}", *TINY,
           "logger=many", "model.g_optimizer.lr=0.0003"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grids = {step: _png(run / "samples" / f"step_{step:06d}.png") for step in (2, 4)}

    # -- wandb (offline run folder) ------------------------------------------------------------
    (run_file,) = offline_runs(run)
    files = run_file.parent / "files"
    fakes = sorted((files / "media" / "images" / "samples").glob("fake_*.png"))
    reals = list((files / "media" / "images" / "samples").glob("real_*.png"))
    assert len(fakes) == 2 and len(reals) == 1
    assert any(np.array_equal(_png(f), grids[2]) for f in fakes)
    assert any(np.array_equal(_png(f), grids[4]) for f in fakes)
    assert list((files / "media" / "videos" / "samples").glob("progress_*.gif"))  # the progress GIF
    rec = summarize(run_file)
    assert rec["exit_code"] == 0
    # named "<experiment or task_name> <overrides>" (cut at 120 characters); single runs are not grouped
    assert " checkpoint_every=4,data.batch_size=16," in rec["run"].display_name
    assert rec["run"].job_type == "run" and not rec["run"].run_group
    losses = [h for h in rec["history"] if "loss/g" in h]
    assert len(losses) == 4 and all(h["loss/d"] > 0 and "d/fake_score" in h for h in losses)
    assert [h["generator_step"] for h in losses] == [1, 2, 3, 4]
    captions = [h.get("samples/fake/captions") for h in rec["history"]]
    assert ["generator step 2"] in captions and ["generator step 4"] in captions
    assert rec["summary"]["model/params/generator"] > 0 and rec["summary"]["model/params/discriminator"] > 0
    assert rec["config"]["model"]["g_optimizer"]["lr"] == 0.0003  # the config
    assert rec["config"]["generator_steps"] == 4

    # -- TensorBoard ------------------------------------------------------------------------------
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"samples/real", "samples/fake"} <= set(tags["images"])
    events = acc.Images("samples/fake")
    assert [e.step for e in events] == [2, 4]
    for e in events:
        assert np.array_equal(_png(e.encoded_image_string), grids[e.step])
    assert len(acc.Scalars("loss/g")) == 4 and len(acc.Scalars("loss/d")) == 4
    assert "model/summary/text_summary" in tags["tensors"]

    # -- CSV (scalars; its images are the PNG files of the run folder) -----------------------------
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    assert len(rows) == 4
    tb = [s.value for s in acc.Scalars("loss/g")]
    wb = [h["loss/g"] for h in losses]
    assert [float(r["loss/g"]) for r in rows] == pytest.approx(tb)
    assert [float(r["loss/g"]) for r in rows] == pytest.approx(wb)
    assert (run / "model_summary.txt").read_text().count("generator") >= 1


def test_wandb_offline_unless_credentials(tmp_path, monkeypatch):
    for k in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not wandb_credentials_available() and resolve_offline("auto") is True
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    assert wandb_credentials_available() and resolve_offline("auto") is False
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_offline("auto") is True
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_offline("auto") is False
    assert resolve_offline(True) is True and resolve_offline("false") is False


def test_run_names():
    ov = ["model.g_optimizer.lr=1e-4", "data.batch_size=32", "paths.root_dir=/x", "trainer.devices=2"]
    assert run_name("dcgan_celeba", ov) == "dcgan_celeba data.batch_size=32,model.g_optimizer.lr=1e-4"
    assert run_name("train", ov, 3, swept=["model.g_optimizer.lr"]) == "train#3 g_optimizer.lr=1e-4"
    assert len(run_name("x", [f"k{i}=v" for i in range(100)])) == 120


def test_swept_keys_from_multirun_yaml(tmp_path):
    import yaml
    from omegaconf import OmegaConf

    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": [
        "model.g_optimizer.lr=1e-4,2e-4", "logger=[csv,wandb]", "seed=range(3)", "data.batch_size=32"]}}}))
    hc = OmegaConf.create({"sweep": {"dir": str(tmp_path)}, "sweeper": {"params": {"model.n_critic": "1,2"}}})
    assert swept_keys(hc) == ["model.n_critic", "model.g_optimizer.lr", "seed"]


def test_per_class_grids_for_conditional_models(tmp_path, make_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ganlab.train import train

    cfg = make_cfg(tmp_path, "model=cgan", "data.labels=[Smiling,Eyeglasses]", "model.generator.num_classes=2",
                   "model.generator.label_kind=multi_hot", "generator_steps=2", "sample_every=2",
                   "logger=tensorboard", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null")
    train(cfg)
    run = tmp_path / "run"
    grids = sorted(p.name for p in (run / "samples" / "classes").glob("*.png"))
    assert grids == ["00_Smiling.png", "01_Eyeglasses.png"]
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    assert {"samples/class/Smiling", "samples/class/Eyeglasses"} <= set(acc.Tags()["images"])
    img = acc.Images("samples/class/Smiling")[0]
    assert img.step == 2 and np.array_equal(_png(img.encoded_image_string), _png(run / "samples" / "classes" / grids[0]))
