"""Sweeps: Hydra multiruns (parallel jobs with the joblib launcher), Optuna sweeps, the per-job
``final_metrics.json`` (summary callback) and the sweep report (``python -m ganlab.report``)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from _wandb_records import offline_runs, summarize
from ganlab import report
from ganlab.callbacks.summary import Summary

TINY = [
    "data.resolution=16", "data.batch_size=16",
    "model.generator.base_width=8", "model.discriminator.base_width=8", "model.generator.z_dim=16",
    "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "generator_steps=4", "sample_every=2",
    "checkpoint_every=4", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null",
]


def run_sweep(tmp_path: Path, *overrides: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY",)}
    env.update({"GANLAB_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline", "MPLBACKEND": "Agg"})
    cmd = [sys.executable, "-m", "ganlab.train", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           f"paths.root_dir={tmp_path}", *TINY, *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def load_summary(job: Path) -> dict:
    return json.loads((job / "final_metrics.json").read_text())


def test_parallel_multirun_writes_summaries_and_report(tmp_path):
    # two jobs in parallel (joblib), both building the same data cache at once (file lock)
    proc = run_sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "data.source.num_images=96",
                     "optimized_metric=loss/g", "logger=[csv,wandb]", "model.g_optimizer.lr=1e-4,3e-4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = [sweep / "0", sweep / "1"]
    for job in jobs:
        s = load_summary(job)
        assert s["status"] == "completed" and s["generator_step"] == 4
        assert s["optimized_metric"]["name"] == "loss/g"
        assert s["final"]["loss/g"] == s["optimized_metric"]["final"] > 0
        assert s["best"]["loss/g"]["value"] <= s["final"]["loss/g"]
        assert 1 <= s["best"]["loss/g"]["generator_step"] <= 4
        assert {"loss/d", "d/real_score", "d/fake_score"} <= set(s["final"])
    # one shared data cache, no leftovers of the concurrent build
    cache = sorted(p.name for p in (tmp_path / "cache" / "data").iterdir() if not p.name.endswith(".lock"))
    assert len([n for n in cache if n.endswith(".npy")]) == 1, cache
    assert not [n for n in cache if "tmp" in n], cache

    # wandb: one offline run per job, grouped by the multirun folder, named from the overrides
    names = set()
    for num, job in enumerate(jobs):
        (run_file,) = offline_runs(job)
        rec = summarize(run_file)
        assert rec["run"].run_group == "sweep" and rec["run"].job_type == "multirun"
        names.add(rec["run"].display_name)
        # "<experiment or task_name>#<job> <swept overrides>"
        assert f"#{num} g_optimizer.lr=0.000" in rec["run"].display_name
        assert rec["exit_code"] == 0
    assert len(names) == 2

    rep = report.make_report(sweep)
    assert rep["metric"] == "loss/g" and len(rep["rows"]) == 2
    header, rows = rep["header"], rep["rows"]
    col = header.index("final loss/g")
    lr_col = header.index("model.g_optimizer.lr")
    assert sorted(r[lr_col] for r in rows) == ["0.0001", "0.0003"]
    finals = [r[col] for r in rows]
    assert finals == sorted(finals) and all(v is not None and v > 0 for v in finals)
    assert {r[header.index("status")] for r in rows} == {"completed"}
    for row, job in zip(rows, (sweep / r[1] for r in rows)):
        assert row[col] == pytest.approx(load_summary(job)["final"]["loss/g"])
    with open(sweep / "sweep_report.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    md = (sweep / "sweep_report.md").read_text()
    assert "| 0.0001 |" in md and "| 0.0003 |" in md and "sweep_loss_g.png" in md
    assert (sweep / "sweep_loss_g.png").stat().st_size > 1000
    # the command line prints the same table
    assert report.main([str(sweep), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "sweep_report.md").read_text().count("| completed |") == 2


def test_optuna_sweep_two_trials(tmp_path):
    db = tmp_path / "optuna.db"
    # the shipped search config; FID (Inception) is dropped to keep the test small
    proc = run_sweep(tmp_path, "hparams_search=dcgan_optuna", "~callbacks.metrics", "optimized_metric=loss/g",
                     "data.source.num_images=96", "hydra.sweeper.n_trials=2",
                     f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=test")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert db.is_file()  # SQL storage works (optuna 2.x needs SQLAlchemy < 2: pinned in pyproject)
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    finals = [load_summary(sweep / str(i))["final"]["loss/g"] for i in (0, 1)]
    assert results["best_value"] == pytest.approx(min(finals))
    # the search space minus data.batch_size, which the command line (TINY) fixes
    assert set(results["best_params"]) == {"model.g_optimizer.lr", "model.d_optimizer.lr", "model.g_optimizer.betas",
                                           "model.loss.label_smoothing"}
    rep = report.make_report(sweep)
    assert len(rep["rows"]) == 2
    best_row = rep["rows"][0]
    assert best_row[rep["header"].index("final loss/g")] == pytest.approx(min(finals))
    assert "Optuna (`optimization_results.yaml`)" in rep["markdown"]


def test_diverged_job_does_not_stop_the_sweep(tmp_path):
    """One sweep subprocess, 2 jobs x 6 tiny steps (SGD lr=100 makes D's loss non-finite by then)."""
    proc = run_sweep(tmp_path, "data.source.num_images=96", "generator_steps=6", "optimized_metric=loss/g",
                     "model.d_optimizer._target_=torch.optim.SGD", "~model.d_optimizer.betas",
                     "model.d_optimizer.lr=100,0.0002")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert load_summary(sweep / "0")["status"] == "failed"
    assert "non-finite" in load_summary(sweep / "0")["error"]
    assert load_summary(sweep / "1")["status"] == "completed"
    rep = report.make_report(sweep)
    assert [r[-1] for r in rep["rows"]] == ["completed", "failed"]


@pytest.mark.slow  # a second sweep subprocess (~20 CPU-s); the basic sweep above is in the default suite
def test_diverged_optuna_trial_reports_inf(tmp_path):
    """Optuna: a diverged trial reports +inf (NaN would abort the study in optuna 2.x)."""
    proc = run_sweep(tmp_path / "optuna", "hparams_search=dcgan_optuna", "~callbacks.metrics", "optimized_metric=loss/g",
                     "data.source.num_images=96", "generator_steps=6", "hydra.sweeper.n_trials=2",
                     "model.d_optimizer._target_=torch.optim.SGD", "~model.d_optimizer.betas", "model.d_optimizer.lr=100")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "optuna" / "sweep"
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"] == float("inf")
    assert [load_summary(sweep / str(i))["status"] for i in (0, 1)] == ["failed", "failed"]


# -- the report and the summary callback on their own (no training) ------------------------------
def _fake_job(root: Path, num: int, overrides: list[str], summary: dict | None, csv_rows: list[dict] | None = None):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": "metrics/fid"}))
    if summary is not None:
        (job / "final_metrics.json").write_text(json.dumps(summary))
    if csv_rows:
        (job / "csv").mkdir()
        keys = sorted({k for r in csv_rows for k in r})
        with open(job / "csv" / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(csv_rows)


def _summary(fid: float, precision: float, status: str = "completed") -> dict:
    return {"status": status, "generator_step": 100, "seconds": 1.0,
            "final": {"metrics/fid": fid, "metrics/precision": precision, "loss/g": 1.0},
            "best": {"metrics/fid": {"value": fid - 1, "generator_step": 50, "mode": "min"},
                     "metrics/precision": {"value": precision, "generator_step": 100, "mode": "max"}}}


def test_report_sorting_failed_jobs_and_csv_fallback(tmp_path):
    root = tmp_path / "multirun"
    _fake_job(root, 0, ["data.batch_size=32", "model.g_optimizer.lr=0.0001"], _summary(30.0, 0.5))
    _fake_job(root, 1, ["data.batch_size=32", "model.g_optimizer.lr=0.0002"], _summary(float("nan"), 0.1, "failed"))
    _fake_job(root, 2, ["data.batch_size=32", "model.g_optimizer.lr=0.0004"], None, csv_rows=[
        {"metrics/fid": 40.0, "metrics/generator_step": 50},
        {"loss/g": 2.0, "generator_step": 60},
        {"metrics/fid": 20.0, "metrics/generator_step": 100}])
    _fake_job(root, 10, ["data.batch_size=32", "model.g_optimizer.lr=0.0008"], _summary(25.0, 0.7))
    rep = report.make_report(root)
    h, rows = rep["header"], rep["rows"]
    assert rep["metric"] == "metrics/fid" and rep["mode"] == "min"  # from the jobs' optimized_metric
    assert h[2] == "model.g_optimizer.lr" and "data.batch_size" not in h  # shared -> above the table
    assert "`data.batch_size=32`" in rep["markdown"]
    assert [r[1] for r in rows] == ["2", "10", "0", "1"]  # csv fallback 20 < 25 < 30 < failed
    assert rows[0][h.index("best step")] == 100 and rows[0][-1] == "no summary"
    assert rows[-1][-1] == "failed" and rows[-1][h.index("final metrics/fid")] is None
    assert rows[2][h.index("best metrics/fid")] == 29.0
    assert rep["plot"] is not None and rep["plot"].name == "sweep_metrics_fid.png"
    # the other direction and another metric
    rep = report.make_report(root, metric="metrics/precision", out=tmp_path / "p")
    assert rep["mode"] == "max" and [r[1] for r in rep["rows"]] == ["10", "0", "2", "1"]  # failed job last
    assert report.main([str(tmp_path / "empty")]) == 2


def test_run_summary_attributes_values_to_their_step(tmp_path):
    cb = Summary(str(tmp_path / "final_metrics.json"), optimized_metric="metrics/fid")
    trainer = SimpleNamespace(callback_metrics={}, is_global_zero=True, global_step=0, world_size=1)
    module = SimpleNamespace(generator_step=0)
    log = [  # (generator step that produced it, what it logged)
        (1, {"loss/g": 2.0}), (2, {"loss/g": 1.0, "metrics/fid": 50.0, "metrics/precision": 0.2}),
        (3, {"loss/g": float("nan")}), (4, {"loss/g": 1.5, "metrics/fid": 40.0, "metrics/precision": 0.1}),
    ]
    for step, values in log:
        module.generator_step = step - 1
        cb.on_train_batch_start(trainer, module, None, 0)  # sees what the previous batch logged
        module.generator_step = step
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in values.items()})
    trainer.callback_metrics["epoch"] = torch.tensor(0.0)
    cb.on_fit_end(trainer, module)
    s = json.loads((tmp_path / "final_metrics.json").read_text())
    assert s["status"] == "completed" and s["generator_step"] == 4
    assert s["final"] == {"loss/g": 1.5, "metrics/fid": 40.0, "metrics/precision": pytest.approx(0.1)}
    assert s["best"]["loss/g"] == {"value": 1.0, "generator_step": 2, "mode": "min"}
    assert s["best"]["metrics/fid"] == {"value": 40.0, "generator_step": 4, "mode": "min"}
    assert s["best"]["metrics/precision"]["generator_step"] == 2 and s["best"]["metrics/precision"]["mode"] == "max"
    assert s["optimized_metric"] == {"name": "metrics/fid", "final": 40.0, "best": 40.0, "mode": "min"}
    assert "epoch" not in s["final"]
    # resume: the best values travel with the checkpoint
    cb2 = Summary(str(tmp_path / "b.json"))
    cb2.load_state_dict(cb.state_dict())
    trainer.callback_metrics = {"loss/g": torch.tensor(1.2)}
    cb2.on_fit_end(trainer, module)
    s2 = json.loads((tmp_path / "b.json").read_text())
    assert s2["best"]["loss/g"]["value"] == 1.0 and s2["final"]["loss/g"] == pytest.approx(1.2)
    # a failure still leaves a file
    cb.on_exception(trainer, module, RuntimeError("boom"))
    s3 = json.loads((tmp_path / "final_metrics.json").read_text())
    assert s3["status"] == "failed" and "boom" in s3["error"]
    assert math.isfinite(s3["best"]["loss/g"]["value"])


@pytest.mark.parametrize("name", ["dcgan_optuna", "dcgan_grid", "wgan_gp_optuna"])
def test_shipped_search_configs_minimize_fid(tmp_path, name):
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"hparams_search={name}", f"paths.root_dir={tmp_path}"],
                      return_hydra_config=True)
    assert cfg.optimized_metric == "metrics/fid"
    assert cfg.callbacks.metrics._target_ == "ganlab.callbacks.metrics.Metrics"
    assert "fid" in cfg.callbacks.metrics.metrics
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN" and cfg.hydra.sweeper.params
    if name.endswith("optuna"):
        assert cfg.hydra.sweeper.direction == "minimize"
        assert "OptunaSweeper" in cfg.hydra.sweeper._target_


def test_run_summary_reads_losses_on_logging_steps_and_metrics_any_step(tmp_path):
    cb = Summary(str(tmp_path / "s.json"))
    trainer = SimpleNamespace(callback_metrics={}, is_global_zero=True, global_step=0, world_size=1,
                              log_every_n_steps=2, fast_dev_run=False)
    module = SimpleNamespace(generator_step=0)
    for step, values in [(1, {"loss/g": 0.5}), (2, {"loss/g": 1.0}), (3, {"metrics/fid": 30.0}),
                         (4, {"loss/g": 2.0, "metrics/fid": 35.0})]:
        module.generator_step = step - 1
        cb.on_train_batch_start(trainer, module, None, 0)
        module.generator_step = step
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in values.items()})
    cb.on_fit_end(trainer, module)
    s = json.loads((tmp_path / "s.json").read_text())
    # 0.5 (step 1, not a logging step) is never read; the FID of step 3 is
    assert s["best"]["loss/g"] == {"value": 1.0, "generator_step": 2, "mode": "min"}
    assert s["best"]["metrics/fid"] == {"value": 30.0, "generator_step": 3, "mode": "min"}
    assert s["final"] == {"loss/g": 2.0, "metrics/fid": 35.0}
