"""Beyond one machine, for real: the commands of docs/cluster.md, read from the page and run as
written against a SLURM 22.05 cluster on this host (tests/slurm_cluster.py: munged, slurmctld,
two slurmd nodes), plus two "machines" through Lightning's environment variables and a killed
Optuna sweep that continues. Words in <angle brackets> on the page are filled in here, nothing
else is added. CPU only (gloo), one host: what that leaves untested is listed on the page.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO

DOC = REPO / "docs" / "cluster.md"
SMOKE_STEPS = 40  # conf/experiment/cluster_smoke.yaml
TIMEOUT = 400


def doc_commands(name: str, **fill: str) -> list[str]:
    """The command lines of the box marked ``<!-- cluster-test: name -->`` in docs/cluster.md, with
    ``<key>`` placeholders replaced by ``fill[key]`` (every placeholder must be filled)."""
    text = DOC.read_text()
    m = re.search(rf"<!-- cluster-test: {re.escape(name)} -->\s*```bash\n(.*?)```", text, re.S)
    assert m, f"docs/cluster.md has no box marked cluster-test: {name}"
    lines = [ln for ln in m.group(1).replace("\\\n", " ").splitlines() if ln.strip()]
    out = []
    for ln in lines:
        ln = re.sub(r"<(\w+)>", lambda k: fill[k.group(1)], ln)
        out.append(ln)
    return out


def job_env(tmp_root: Path, cluster=None) -> dict[str, str]:
    env = dict(cluster.env if cluster is not None else os.environ)
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_")) and v != "SLURM_CONF"]:
        env.pop(var)
    if cluster is None:
        env.pop("SLURM_CONF", None)
    env.update({
        # `python` on the page is this interpreter; the checkout's ganlab comes first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "GANLAB_CACHE": str(tmp_root / "cache"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "WANDB_MODE": "offline", "MPLBACKEND": "Agg", "HYDRA_FULL_ERROR": "1",
    })
    env.pop("GANLAB_ROOT", None)
    return env


def start(cmd: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"timed out after {timeout} s:\n{out[-4000:]}") from None
    assert proc.returncode == 0, f"{proc.args[-1]}\nexit {proc.returncode}:\n{out[-5000:]}"
    return out


def run(cmd: str, cwd: Path, env: dict[str, str], timeout: float = TIMEOUT) -> str:
    return finish(start(cmd, cwd, env), timeout)


def only(paths) -> Path:
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert any(k.startswith("generator_ema.") for k in wa) and any(k.startswith("discriminator.") for k in wa)
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} of {len(wa)} tensors differ between {a} and {b}: {different[:5]}"


def wait_for(cond, timeout: float, what: str, proc: subprocess.Popen | None = None, poll: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = cond()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the command ended first (exit {proc.returncode}):\n"
                                 f"{proc.communicate()[0][-4000:]}")
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(scope="module")
def local_ddp(tmp_path_factory) -> Path:
    """last.ckpt of the page's one-machine DDP run (Lightning starts rank 1 itself)."""
    root = tmp_path_factory.mktemp("ddp_local")
    (cmd,) = doc_commands("ddp-local")
    run(cmd, root / "work", job_env(root))
    return only((root / "work" / "logs" / "train" / "runs").glob("*/checkpoints/last.ckpt"))


# -- 1. a sweep submitted to SLURM, and its report ----------------------------------------------
def test_slurm_sweep_and_report(slurm_cluster, tmp_path):
    sweep_cmd, report_cmd = doc_commands("sweep", date_time="{date_time}")
    work, env = tmp_path / "work", job_env(tmp_path, slurm_cluster)
    run(sweep_cmd, work, env)
    slurm_cluster.wait_idle(60)  # a job's result is written moments before it ends
    sweep = only((work / "logs" / "train" / "multiruns").iterdir())
    # one SLURM job array of two tasks, both completed by the controller
    script = only((sweep / ".submitit").glob(".submission_file_*.sh")).read_text()
    assert "#SBATCH --array=0-1%2" in script and "srun" in script
    array_id = only({p.name.split("_")[0] for p in (sweep / ".submitit").glob("*_*") if p.is_dir()})
    for task in (0, 1):
        info = slurm_cluster.job_info(f"{array_id}_{task}")
        assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", info
    lrs = set()
    for job in (sweep / "0", sweep / "1"):
        summary = json.loads((job / "final_metrics.json").read_text())
        assert summary["status"] == "completed" and summary["generator_step"] == SMOKE_STEPS
        assert summary["final"]["loss/g"] > 0
        assert (job / "checkpoints" / "last.ckpt").is_file()
        lrs.add(yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["model"]["g_optimizer"]["lr"])
    assert lrs == {1e-4, 3e-4}

    out = run(report_cmd.format(date_time=sweep.name), work, env)
    assert out.count("| completed |") == 2, out
    rows = (sweep / "sweep_report.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and {"0.0001", "0.0003"} <= set(",".join(rows[1:]).split(","))


# -- 2. DDP under SLURM: two nodes, one task each ----------------------------------------------------
@pytest.mark.slow
def test_slurm_ddp_two_nodes_equals_local_ddp(slurm_cluster, tmp_path, local_ddp):
    (cmd,) = doc_commands("ddp")
    work = tmp_path / "work"
    run(cmd, work, job_env(tmp_path, slurm_cluster))
    slurm_cluster.wait_idle(60)
    sweep = only((work / "logs" / "train" / "multiruns").iterdir())
    job = sweep / "0"
    job_id = only({p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()})
    info = slurm_cluster.job_info(job_id)
    assert info["JobState"] == "COMPLETED" and info["NumNodes"] == "2" and info["NumTasks"] == "2", info
    assert info["NodeList"] == "node[1-2]"
    # SLURM started both ranks (one task log each); Lightning took them from its environment
    logs = {t: (sweep / ".submitit" / job_id / f"{job_id}_{t}_log.err").read_text() for t in (0, 1)}
    for rank, text in logs.items():
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in text, text[-2000:]
    summary = json.loads((job / "final_metrics.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert summary["generator_step"] == SMOKE_STEPS
    # checkpoints written once, by rank 0 (no -v1 copies from rank 1)
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == [
        "gstep_000020.ckpt", "gstep_000030.ckpt", "gstep_000040.ckpt", "last.ckpt"]
    # tolerance 0: the same two ranks, shards and noise streams as Lightning's own launch
    assert_same_weights(job / "checkpoints" / "last.ckpt", local_ddp)


# -- multi-node DDP without SLURM: Lightning's environment variables -------------------------------
@pytest.mark.slow
def test_two_nodes_by_environment_equals_local_ddp(tmp_path, local_ddp):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    cmds = doc_commands("two-nodes", node0_address="127.0.0.1", port=port)
    assert len(cmds) == 2 and "NODE_RANK=0" in cmds[0] and "NODE_RANK=1" in cmds[1]
    work, env = tmp_path / "work", job_env(tmp_path)
    env.pop("MASTER_ADDR", None)
    procs = [start(c, work, env) for c in cmds]
    outs = [finish(p) for p in procs]
    for rank, out in enumerate(outs):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in out, out[-2000:]
    run_dir = work / "logs" / "train" / "runs" / "two_nodes"
    summary = json.loads((run_dir / "final_metrics.json").read_text())
    assert summary["world_size"] == 2 and summary["generator_step"] == SMOKE_STEPS
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "gstep_000020.ckpt", "gstep_000030.ckpt", "gstep_000040.ckpt", "last.ckpt"]
    assert_same_weights(run_dir / "checkpoints" / "last.ckpt", local_ddp)


# -- 3. pre-emption: warning signal -> last.ckpt -> requeue -> ckpt_path=auto -> same weights --------
def test_preempted_job_is_requeued_and_ends_like_an_uninterrupted_run(slurm_cluster, tmp_path):
    (laptop,) = doc_commands("laptop")
    submit, signal_cmd = doc_commands("preempt", job_id="{job_id}")
    steps = int(re.search(r"generator_steps=(\d+)", submit).group(1))
    assert f"generator_steps={steps}" in laptop and steps > 3 * 10  # signalled well before the end
    reference = start(laptop, tmp_path / "laptop", job_env(tmp_path))
    work, env = tmp_path / "work", job_env(tmp_path, slurm_cluster)
    sweep_proc = start(submit, work, env)
    multiruns = work / "logs" / "train" / "multiruns"
    # the job is training once its first periodic checkpoint (generator step 10) exists
    ckpt = wait_for(lambda: next(multiruns.glob("*/0/checkpoints/gstep_000010.ckpt"), None), TIMEOUT,
                    "first checkpoint of the SLURM job", sweep_proc, poll=0.05)
    sweep = ckpt.parents[2]
    job_id = only(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir())
    run(signal_cmd.format(job_id=job_id), work, env, timeout=60)
    finish(sweep_proc)

    slurm_cluster.wait_idle(60)
    info = slurm_cluster.job_info(job_id)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", info
    job = sweep / "0"
    log = (job / "train.log").read_text()
    stopped = re.search(r"stopped by SIGUSR2 after generator step (\d+)", log)
    assert stopped and 10 <= int(stopped.group(1)) < steps, log[-3000:]
    assert f"ckpt_path=auto: resuming from {job / 'checkpoints' / 'last.ckpt'}" in log, log[-3000:]
    summary = json.loads((job / "final_metrics.json").read_text())
    assert summary["status"] == "completed" and summary["generator_step"] == steps

    finish(reference)
    ref = only((tmp_path / "laptop" / "logs" / "train" / "runs").glob("*/checkpoints/last.ckpt"))
    assert_same_weights(job / "checkpoints" / "last.ckpt", ref)


# -- 4. an Optuna sweep killed mid-way continues ----------------------------------------------------
@pytest.mark.slow
def test_killed_optuna_sweep_continues(tmp_path):
    (cmd,) = doc_commands("optuna")
    n_trials = int(re.search(r"n_trials=(\d+)", cmd).group(1))
    work, env = tmp_path / "work", job_env(tmp_path)
    sweep = work / "logs" / "train" / "multiruns" / "smoke"
    proc = start(cmd, work, env)
    # trial 0 done, trial 1 started: kill the sweep process (and its jobs: one process group)
    wait_for(lambda: (sweep / "1").is_dir(), TIMEOUT, "the second trial", proc, poll=0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = (sweep / "0" / "final_metrics.json")
    kept = (first.read_bytes(), first.stat().st_mtime_ns)
    assert json.loads(kept[0])["status"] == "completed"
    assert not (sweep / "1" / "final_metrics.json").exists()

    out = run(cmd, work, env)
    assert "1 finished trial(s) kept, 1 interrupted one(s) run again, 2 trial(s) to run" in out, out[-3000:]
    assert (first.read_bytes(), first.stat().st_mtime_ns) == kept  # trial 0 was not re-run
    with sqlite3.connect(work / "optuna.db") as db:
        states = db.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
        params = {}
        for number, name, value in db.execute(
                "SELECT t.number, p.param_name, p.param_value FROM trial_params p JOIN trials t USING (trial_id)"):
            params.setdefault(number, {})[name] = value
    assert states == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE"), (3, "COMPLETE")]
    assert params[2] == params[1]  # the interrupted trial, tried again first
    assert sum(s == "COMPLETE" for _, s in states) == n_trials
    finals = {}
    for n in (0, 2, 3):
        s = json.loads((sweep / str(n) / "final_metrics.json").read_text())
        assert s["status"] == "completed" and s["generator_step"] == SMOKE_STEPS
        finals[n] = s["final"]["loss/g"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(finals.values()))

    # the same command once more: nothing left to run
    out = run(cmd, work, env)
    assert "3 finished trial(s) kept, 0 interrupted one(s) run again, 0 trial(s) to run" in out
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2", "3"]


def test_cluster_fixture_says_why_it_cannot_start(monkeypatch):
    import slurm_cluster as sc

    monkeypatch.setattr(sc, "_which", lambda name: None if name in ("munged", "sbatch") else f"/usr/bin/{name}")
    assert sc.unavailable() == ("SLURM test cluster: munged, sbatch not installed "
                                "(apt-get install slurm-wlm munge, as .ci/run does)")
    monkeypatch.setattr(sc, "_which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in sc.unavailable()


def test_resume_study_adjusts_the_sweep_before_it_starts(tmp_path):
    """ganlab.resume_study on its own (the slow test above kills a real sweep): what the sweeper is
    left to do, and where the next jobs go."""
    import warnings

    import optuna
    from omegaconf import OmegaConf

    from ganlab.resume_study import ResumeStudy

    storage = f"sqlite:///{tmp_path / 'o.db'}"
    cfg = OmegaConf.create({"hydra": {
        "sweeper": {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
                    "storage": storage, "study_name": "s", "n_trials": 5},
        "sweep": {"dir": str(tmp_path), "subdir": "${hydra.job.num}"}, "overrides": {"hydra": []}}})
    ResumeStudy().on_multirun_start(cfg)  # no study yet: nothing changes
    assert cfg.hydra.sweeper.n_trials == 5 and cfg.hydra.overrides.hydra == []

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name="s", storage=storage)
        for value in (1.0, 2.0):
            t = study.ask()
            t.suggest_float("lr", 0.0, 1.0)
            study.tell(t, value)
        t = study.ask()
        lost = t.suggest_float("lr", 0.0, 1.0)  # the trial a killed sweep left running
        OmegaConf.set_readonly(cfg.hydra, True)  # as Hydra hands it over
        ResumeStudy().on_multirun_start(cfg)
        assert cfg.hydra.sweeper.n_trials == 3  # 5 minus the two finished ones
        assert OmegaConf.to_container(cfg.hydra.overrides.hydra) == ["hydra.sweep.subdir='${add:${hydra.job.num},3}'"]
        study = optuna.load_study(study_name="s", storage=storage)  # as the sweeper opens it next
        states = [tr.state.name for tr in study.get_trials()]
        assert states == ["COMPLETE", "COMPLETE", "FAIL", "WAITING"]
        again = study.ask()  # the sweeper's first ask: the interrupted trial's parameters, as trial 3
        assert again.number == 3 and again.suggest_float("lr", 0.0, 1.0) == lost
    assert OmegaConf.create({"num": 0, "d": "${add:${num},3}"}).d == 3
