"""Metrics inside real (tiny) training runs of ganlab's GAN."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch

from _metrics_helpers import StubExtractor, session_weights
from ganlab.callbacks import metrics as cbm
from ganlab.metrics import evaluator as evaluator_mod
from ganlab.train import train

STEP_COL = "metrics/generator_step"


def read_csv_rows(path):
    with open(path) as f:
        return [r for r in csv.DictReader(f) if r.get("metrics/fid")]


def test_callback_logs_inception_metrics_to_csv_json_and_keeps_best(tiny_cfg):
    """Hydra-wired (conf/callbacks/metrics.yaml), real InceptionV3: one evaluation of 12 fakes against
    16 reals at the end of training (the on_train_end path; periodic evaluations are tested below).
    One 2048-d FID costs one 2048x2048 eigendecomposition: seconds on 2 cores."""
    session_weights()  # make sure the converted weights exist (one-time, cached)
    cfg = tiny_cfg(
        "callbacks=[metrics]", "logger=csv", "generator_steps=4",
        "callbacks.metrics.every_n_steps=0", "callbacks.metrics.n_fake=12", "callbacks.metrics.n_real=16",
        "callbacks.metrics.kid_subset_size=8", "callbacks.metrics.batch_size=16",
        "callbacks.metrics.cpu_budget=null",  # 4 steps train faster than InceptionV3 reads 28 images on a CPU
    )
    metrics, trainer = train(cfg)
    run = trainer.default_root_dir
    cb = next(c for c in trainer.callbacks if isinstance(c, cbm.Metrics))

    # every logger got the values, at the generator step (4 generator steps = 8 optimizer steps)
    rows = read_csv_rows(f"{run}/csv/metrics.csv")
    assert [float(r[STEP_COL]) for r in rows] == [4.0]
    for k in ("fid", "kid", "kid_std", "precision", "recall", "f1"):
        assert rows[0][f"metrics/{k}"] != ""
    assert float(rows[0]["metrics/fid"]) > 0
    assert trainer.global_step == 8 and metrics["metrics/fid"] == pytest.approx(float(rows[0]["metrics/fid"]))

    # the run folder's metrics.json: protocol, history, best
    data = json.loads(open(f"{run}/metrics.json").read())
    assert [h["generator_step"] for h in data["history"]] == [4]
    p = data["protocol"]
    assert p["n_real"] == 16 and p["n_fake"] == 12 and p["reference_split"] == "train"
    assert p["weights_sha256"] == session_weights().sha256 and p["resolution_fake"] == "16x16"
    assert p["kid"]["subset_size"] == 8 and "tensorflow1x" in p["resize"]
    assert data["best"]["generator_step"] == 4 and data["best"]["fid"] == data["history"][0]["fid"]
    assert data["history"][0]["seconds"]["reference_extracted"] is True

    ckpt = torch.load(f"{run}/checkpoints/best_fid.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["ganlab"]["generator_step"] == 4
    assert cb.best_ckpt_path.endswith("best_fid.ckpt")


def test_best_checkpoint_follows_the_best_fid(tiny_cfg, monkeypatch):
    """Scripted FIDs 5, 3, 4, 6 at generator steps 2, 4, 6, 8: best_fid.ckpt must hold step 4."""
    script = iter([5.0, 3.0, 4.0, 6.0])

    def fake_compute(real, fake, groups, **kw):
        return {"fid": next(script), "kid": 0.1, "kid_std": 0.01, "precision": 0.5, "recall": 0.4, "f1": 0.44}

    monkeypatch.setattr(evaluator_mod, "compute_metrics", fake_compute)
    ext = StubExtractor()
    cfg = tiny_cfg("callbacks=none", "logger=csv", "generator_steps=8")
    seen = []

    class Spy(cbm.L.Callback):  # runs after Metrics: what does the best checkpoint hold now?
        def on_train_batch_end(self, trainer, pl_module, *a):
            path = f"{trainer.default_root_dir}/checkpoints/best_fid.ckpt"
            if pl_module.generator_step % 2 == 0:
                seen.append(torch.load(path, map_location="cpu", weights_only=False)["ganlab"]["generator_step"])

    cb = cbm.Metrics(every_n_steps=2, n_fake=8, n_real=16, batch_size=8, extractor=ext,
                             cache_dir=str(cfg.paths.cache_dir), run_dir=str(cfg.paths.output_dir),
                             dirpath=f"{cfg.paths.output_dir}/checkpoints")
    _, trainer = train(cfg, extra_callbacks=[cb, Spy()])
    assert seen == [2, 4, 4, 4]
    assert cb.best["generator_step"] == 4 and cb.best["fid"] == 3.0
    rows = read_csv_rows(f"{trainer.default_root_dir}/csv/metrics.csv")
    assert [float(r["metrics/fid"]) for r in rows] == [5.0, 3.0, 4.0, 6.0]
    assert ext.images_processed == 16 + 4 * 8  # reference once, then only fakes
    data = json.loads(open(f"{trainer.default_root_dir}/metrics.json").read())
    assert [h["seconds"]["reference_extracted"] for h in data["history"]] == [True, False, False, False]
    assert data["best"]["generator_step"] == 4 and data["best"]["ckpt_path"] == cb.best_ckpt_path
    # the callback state travels in checkpoints (resume keeps history and best)
    ckpt = torch.load(cb.best_ckpt_path, map_location="cpu", weights_only=False)
    state = next(v for k, v in ckpt["callbacks"].items() if "Metrics" in k)
    fresh = cbm.Metrics(extractor=ext)
    fresh.load_state_dict(state)
    assert fresh.best["generator_step"] == 4 and len(fresh.history) == 2


def test_is_requested_without_logits_is_skipped_with_a_warning(tiny_cfg):
    cfg = tiny_cfg("callbacks=none", "logger=csv", "generator_steps=2")
    cb = cbm.Metrics(every_n_steps=0, n_fake=8, n_real=16, batch_size=8, metrics=["fid", "is"],
                             extractor=StubExtractor(), cache_dir=str(cfg.paths.cache_dir),
                             run_dir=str(cfg.paths.output_dir), dirpath=f"{cfg.paths.output_dir}/checkpoints")
    with pytest.warns(UserWarning, match="IS is skipped"):
        metrics, trainer = train(cfg, extra_callbacks=[cb])
    assert [h["generator_step"] for h in cb.history] == [2]  # at train end only
    assert "metrics/fid" in metrics and "metrics/is" not in metrics
    assert "is" in cb.protocol["skipped"]


class SlowStub(StubExtractor):
    """0.05 s per image: the evaluation (20 + 8 images) costs far more than 2 tiny generator steps."""

    def extract(self, images, logits=False, batch_size=None):
        import time

        time.sleep(0.05 * len(images))
        return super().extract(images, logits=logits, batch_size=batch_size)


def test_cpu_evaluation_over_its_budget_is_skipped_with_a_warning(tiny_cfg, caplog):
    import logging

    cfg = tiny_cfg("callbacks=none", "logger=csv", "generator_steps=2", "trainer.enable_progress_bar=false")
    kw = dict(every_n_steps=0, n_fake=8, n_real=20, batch_size=8, metrics=["fid"], save_best=False,
              cache_dir=str(cfg.paths.cache_dir), run_dir=str(cfg.paths.output_dir))
    ext = SlowStub()
    cb = cbm.Metrics(extractor=ext, cpu_budget=0.001, **kw)
    with caplog.at_level(logging.WARNING, logger="ganlab.callbacks.metrics"):
        metrics, _ = train(cfg, extra_callbacks=[cb])
    assert cb.history == [] and "metrics/fid" not in metrics
    assert ext.images_processed == 8  # only the first, timed batch
    said = [r.getMessage() for r in caplog.records if r.name == "ganlab.callbacks.metrics"]
    # the estimate is the 28 images at the rate measured on the first batch (at most the stub's 20 images/s;
    # slower on a loaded machine, so the seconds are checked against the stated rate, not a constant)
    said_ok = re.match(r"metrics evaluation at generator step 2 skipped: on CPU it would take about (\d+) s "
                       r"\(28 images at ([\d.]+) images/s\)", said[0]) if len(said) == 1 else None
    assert said_ok, said
    seconds, rate = int(said_ok.group(1)), float(said_ok.group(2))
    assert 0 < rate <= 20.5 and abs(seconds - 28 / rate) <= 1
    assert "callbacks.metrics.cpu_budget=null evaluates anyway" in said[0]
    cb = cbm.Metrics(extractor=SlowStub(), cpu_budget=None, **kw)
    metrics, _ = train(tiny_cfg("callbacks=none", "logger=csv", "generator_steps=2"), extra_callbacks=[cb])
    assert [h["generator_step"] for h in cb.history] == [2] and "metrics/fid" in metrics


def test_the_callback_never_moves_the_runs_random_stream(make_cfg, tmp_path, monkeypatch):
    """Building InceptionV3 (at setup, after the run is seeded) draws initial weights; evaluating every 2 steps
    samples fakes: a run with the callback ends with the same generator as one without it."""
    from ganlab.models import load_gan

    session_weights()
    monkeypatch.setattr(evaluator_mod, "compute_metrics", lambda real, fake, groups, **kw: {"fid": 1.0})
    runs = []
    for name, with_metrics in (("with", True), ("without", False)):
        cfg = make_cfg(tmp_path / name, "callbacks=[model_checkpoint]", "logger=[]", "generator_steps=4")
        extra = [cbm.Metrics(every_n_steps=2, n_fake=8, n_real=16, batch_size=8, cpu_budget=None,
                             cache_dir=str(cfg.paths.cache_dir), run_dir=str(cfg.paths.output_dir))] if with_metrics else []
        train(cfg, extra_callbacks=extra)
        assert not with_metrics or [h["generator_step"] for h in extra[0].history] == [2, 4]
        runs.append(load_gan(tmp_path / name / "run" / "checkpoints" / "last.ckpt").generator.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
