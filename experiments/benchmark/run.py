"""Converged benchmarks: (recipe, seed) jobs trained to a fixed budget, scored with a stated protocol.

    python experiments/benchmark/run.py --table fashion --jobs 2     # Lucic et al. 2018, Fashion-MNIST
    python experiments/benchmark/run.py --table faces --jobs 2       # CelebA-64: ganlab vs a plain loop, per CPU-hour
    python experiments/benchmark/run.py --table fashion --aggregate  # tables, grids and curves from finished jobs
    python experiments/benchmark/run.py --table fashion --list       # the jobs, in the order they run

One command per table. Every job trains in its own process (``OMP_NUM_THREADS=1``, under ``nice``) into
``--work/<table>/<job>/`` (default ``/work/bench_runs``: outside the checkout, so a study survives it),
then is scored by ``python -m ganlab.evaluate`` (ganlab's evaluator: InceptionV3 pool3, reference features
cached once). The study is resumable with the same command: finished jobs are skipped, a job that was
killed resumes from its newest checkpoint (``ckpt_path=auto``), a finished training is not scored twice.
``--jobs N`` runs N lanes; a training process gets SIGTERM (it saves ``last.ckpt``) when the runner dies.

The tables, what they measure and the protocols: ``experiments/benchmark/README.md``. Results are written
to ``experiments/benchmark/results/<table>/`` (results.json, results.md, sample grids, FID curves).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import fcntl
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ganlab.utils.files import atomic_write_text

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_WORK = os.environ.get("GANLAB_BENCH_WORK", "/work/bench_runs")
FACES_DATA = ["data=celeba", "data.crop=178", "data.resize_filter=lanczos", "data.resolution=64", "data.split=all"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One recipe: ``experiment`` (conf/experiment/NAME.yaml) + ``overrides``; ``plain``: the hand-written loop."""

    name: str
    label: str
    experiment: str = ""
    overrides: tuple[str, ...] = ()
    networks: str = ""
    loss: str = ""
    paper: tuple[float, float] | None = None  # (mean, std) of the published table
    plain: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    """A list of rows, the order their (row, seed) jobs run in, and how each job is scored."""

    name: str
    title: str
    rows: tuple[Row, ...]
    order: tuple[tuple[str, int], ...]  # (row name, seed), highest value first
    score: tuple[str, ...]  # ganlab.evaluate overrides: the protocol
    protocol: str  # the protocol in words (results.md)
    ema_and_raw: bool = True  # score the raw generator too
    cpu_hours: tuple[float, ...] = ()  # faces: score snapshots at these training CPU-hours
    memorization: bool = False
    paper_source: str = ""

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)


LUCIC = ("Lucic et al. 2018, Table (best FID, Fashion-MNIST, mean +- std of the best configuration over seeds); "
         "reprinted in Dai & Wipf 2019 Table 1")
FASHION = Table(
    name="fashion",
    title="Fashion-MNIST 28x28: Lucic et al. 2018 reproduced, and ganlab's recipes",
    rows=(
        Row("lucic_ns", "NS GAN", "lucic_fashion_ns", networks="InfoGAN (paper)", loss="NS GAN", paper=(26.5, 1.6)),
        Row("lucic_lsgan", "LSGAN", "lucic_fashion_lsgan", networks="InfoGAN (paper)", loss="LSGAN", paper=(30.7, 2.2)),
        Row("lucic_wgan_gp", "WGAN-GP", "lucic_fashion_wgan_gp", networks="InfoGAN (paper)", loss="WGAN-GP",
            paper=(24.5, 2.1)),
        Row("dcgan_ns", "NS GAN", "fashion_ns", networks="ganlab DCGAN", loss="NS GAN", paper=(26.5, 1.6)),
        Row("dcgan_lsgan", "LSGAN", "fashion_lsgan", networks="ganlab DCGAN", loss="LSGAN", paper=(30.7, 2.2)),
        Row("dcgan_wgan_gp", "WGAN-GP", "fashion_wgan_gp", networks="ganlab DCGAN", loss="WGAN-GP", paper=(24.5, 2.1)),
        Row("dcgan_hinge_sn", "hinge + SN", "fashion_hinge_sn", networks="ganlab DCGAN", loss="hinge + SN"),
        Row("best", "ganlab best", "fashion_best", networks="ganlab DCGAN x2 width", loss="NS GAN + EMA"),
    ),
    order=(("lucic_ns", 0), ("lucic_ns", 1), ("lucic_ns", 2), ("best", 0), ("best", 1), ("best", 2),
           ("lucic_lsgan", 0), ("lucic_wgan_gp", 0), ("dcgan_ns", 0), ("dcgan_lsgan", 0), ("dcgan_wgan_gp", 0),
           ("dcgan_hinge_sn", 0)),
    score=("data=fashion_mnist", "metrics.split=test", "metrics.n_fake=10000", "metrics.n_real=null",
           "metrics.sizes=full", "metrics.metrics=[fid,kid]"),
    protocol=("Lucic et al. 2018: 10,000 generated images (noise seed 0) vs the 10,000 official Fashion-MNIST "
              "test images; grayscale copied to 3 channels, bilinear to 299x299, InceptionV3 pool3 "
              "(torch-fidelity's inception-v3-compat, ganlab.metrics); the final checkpoint, EMA and raw generator"),
    paper_source=LUCIC,
)
FACES = Table(
    name="faces",
    title="CelebA faces 64x64 (6,000 shared images): FID against training CPU-hours, ganlab vs a plain loop",
    rows=(
        Row("ganlab", "ganlab (faces_cpu30)", "faces_cpu30", overrides=("++trainer.max_time=null",),
            networks="DCGAN base width 16", loss="NS GAN + EMA + flips"),
        Row("plain", "plain PyTorch loop", networks="DCGAN base width 16", loss="NS GAN", plain=True),
    ),
    order=(("ganlab", 0), ("plain", 0), ("ganlab", 1), ("plain", 1)),
    score=(*FACES_DATA, "metrics.split=all", "metrics.n_fake=3000", "metrics.n_real=null", "metrics.sizes=full",
           "metrics.metrics=[fid,kid,prc]"),
    protocol=("3,000 generated images (noise seed 0; ganlab: EMA generator, plain: its generator in eval mode) vs "
              "all 6,000 shared CelebA faces (crop 178, Lanczos, 64 px), InceptionV3 pool3 (ganlab.metrics)"),
    ema_and_raw=False,
    cpu_hours=(0.25, 0.5, 1.0, 2.0, 4.0),
    memorization=True,
)
#: tiny networks on 96 procedural faces at 16 px (built in, no data needed): the runner end to end in a minute
TINY = ("data.source.num_images=96", "data.resolution=16", "data.batch_size=16", "model.generator.base_width=8",
        "model.discriminator.base_width=8", "model.generator.z_dim=16", "generator_steps=6", "checkpoint_every=2",
        "sample_every=1000", "callbacks=[model_checkpoint,summary]", "logger=[]")
SMOKE = Table(
    name="smoke",
    title="Smoke test of the runner (procedural faces, 16 px, tiny networks; not a measurement)",
    rows=(Row("ns", "NS GAN", overrides=(*TINY, "model/loss=bce"), networks="DCGAN width 8", loss="NS GAN"),
          Row("hinge", "hinge", overrides=(*TINY, "model/loss=hinge"), networks="DCGAN width 8", loss="hinge")),
    order=(("ns", 0), ("hinge", 0)),
    score=("data=faces", "data.source.num_images=96", "data.resolution=16", "metrics.n_fake=64", "metrics.n_real=null",
           "metrics.sizes=full", "metrics.metrics=[fid,kid]", "metrics.kid_subset_size=32"),
    protocol="64 generated images vs the 96 procedural training faces (a smoke test)",
)
TABLES = {t.name: t for t in (FASHION, FACES, SMOKE)}


# -- processes ---------------------------------------------------------------------------------------------
def env1() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO), WANDB_MODE="offline",
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env.setdefault("GANLAB_DATA", str(REPO.parent / "shared" / "data"))
    return env


def _child_setup(nice: int):
    """In the child: its own process group, niceness ``nice`` (absolute: a runner started under ``nice -n 10``
    does not push its jobs to 19), and SIGTERM when the runner dies (ganlab.train then saves last.ckpt)."""

    def setup() -> None:
        os.setpgrp()
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if nice > current:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    return setup


def cpu_seconds_of(pid: int) -> float | None:
    """User + system CPU seconds of a live process (``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def sh(cmd: list[str], log: Path, record: Path | None = None, nice: int = 10) -> float:
    """Run ``cmd`` (one thread, at niceness ``nice``), appending to ``log``; returns its CPU seconds. ``record``: a JSON
    file updated every 30 s with the CPU seconds so far (what a killed attempt cost)."""
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        p = subprocess.Popen(cmd, cwd=REPO, env=env1(), stdout=f, stderr=subprocess.STDOUT,
                             preexec_fn=_child_setup(nice))
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(30):
                cpu = cpu_seconds_of(p.pid)
                if cpu is not None and record is not None:
                    _update_json(record, cpu_seconds=round(cpu, 1))

        if record is not None:
            threading.Thread(target=watch, daemon=True).start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            stop.set()
    cpu = usage.ru_utime + usage.ru_stime
    if record is not None:
        _update_json(record, cpu_seconds=round(cpu, 1), exit=os.waitstatus_to_exitcode(status))
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"exit {code}: {' '.join(cmd)} (log {log})")
    return cpu


def _update_json(path: Path, **values: Any) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(values)
    atomic_write_text(json.dumps(data, indent=2), path)


def load_now() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    import torch

    import ganlab

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if not git and (REPO / "COMMIT").exists():  # a snapshot of the code made with `git archive` (README)
        git = (REPO / "COMMIT").read_text().strip()
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "threads_per_job": 1,
            "python": platform.python_version(), "torch": torch.__version__, "ganlab": ganlab.__version__,
            "git_commit": git or None}


_LOADING = threading.Lock()


# -- one job -----------------------------------------------------------------------------------------------
def job_name(row: str, seed: int) -> str:
    return f"{row}_s{seed}"


class Job:
    """Folder layout of one (row, seed) job under ``work``: ``train/`` (the ganlab.train run folder),
    ``attempt_NNN.json`` (one record per training launch), ``train.json`` (written when training finished),
    ``eval_<point>/metrics.json`` (ganlab.evaluate), ``result.json`` (written when everything is done)."""

    def __init__(self, table: Table, row: Row, seed: int, work: Path) -> None:
        self.table, self.row, self.seed = table, row, seed
        self.name = job_name(row.name, seed)
        self.dir = work / table.name / self.name
        self.train_dir = self.dir / "train"
        self.log = self.dir / "job.log"

    @property
    def result(self) -> Path:
        return self.dir / "result.json"

    def attempts(self) -> list[dict]:
        """One record per training launch (``attempt_NNN.json``); a killed launch keeps the CPU seconds
        its last 30-second reading saw and no ``exit``."""
        return [json.loads(p.read_text()) for p in sorted(self.dir.glob("attempt_*.json"))]

    def train_command(self, args) -> list[str]:
        if self.row.plain:
            return [sys.executable, str(HERE / "plain_loop.py"), "--out", str(self.train_dir), "--seed",
                    str(self.seed), "--cpu-hours", *map(str, self.table.cpu_hours), *args.plain_override]
        cmd = [sys.executable, "-m", "ganlab.train", *([f"experiment={self.row.experiment}"] if self.row.experiment else []), f"seed={self.seed}",
               f"hydra.run.dir={self.train_dir}", "ckpt_path=auto", *self.row.overrides]
        if self.table.cpu_hours:  # snapshots at CPU-hour marks, then stop (experiments/benchmark/cpu_marks.py)
            marks = ",".join(map(str, self.table.cpu_hours))
            cmd += ["+callbacks.cpu_marks._target_=experiments.benchmark.cpu_marks.CpuMarks",
                    f"+callbacks.cpu_marks.hours=[{marks}]", f"+callbacks.cpu_marks.dirpath={self.train_dir / 'marks'}"]
        return cmd + list(args.override)

    def trained(self) -> bool:
        return (self.dir / "train.json").exists()

    def train(self, args) -> None:
        """Train (or resume) to the budget; one record per launch (attempt_NNN.json)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = self.train_command(args)
        rec = self.dir / f"attempt_{len(self.attempts()):03d}.json"
        step = self.newest_step()
        print(f"{self.name}: training from {'scratch' if step is None else f'generator step {step}'}", flush=True)
        _update_json(rec, started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_at_start=load_now(),
                     resume_from_step=step, command=" ".join(cmd), cpu_seconds=0.0)
        t0 = time.time()
        try:
            sh(cmd, self.log, record=rec, nice=args.nice)
        finally:
            _update_json(rec, wall_seconds=round(time.time() - t0, 1), load_at_end=load_now())
        done = self.attempts()
        _update_json(self.dir / "train.json", train_cpu_seconds=round(sum(a["cpu_seconds"] for a in done), 1),
                     train_wall_seconds=round(sum(a.get("wall_seconds", 0) for a in done), 1), attempts=len(done),
                     command=" ".join(cmd))

    def newest_step(self) -> int | None:
        """Generator step of the checkpoint ``ckpt_path=auto`` will resume from (None: a fresh start)."""
        if self.row.plain:
            state = self.train_dir / "state.pt"
            return _plain_step(state) if state.exists() else None
        from ganlab.checkpoints import checkpoint_candidates, load_checkpoint, most_trained_loadable

        folder = self.train_dir / "checkpoints"
        with _LOADING:  # one lane at a time (two lanes loading checkpoints at once hung in torch)
            # (path, dict) of the one auto resumes from: loaded once (newest_loadable + a second load read it twice)
            found = most_trained_loadable(checkpoint_candidates(folder), load_checkpoint) if folder.is_dir() else None
            return None if found is None else int(found[1].get("ganlab", {}).get("generator_step", 0))

    def score_points(self) -> list[tuple[str, list[str]]]:
        """(name, ganlab.evaluate overrides) of every evaluation of this job."""
        if self.table.cpu_hours:
            points = []
            for h in self.table.cpu_hours:
                snap = self.train_dir / "marks" / f"cpu_{h:g}h"
                ovr = ([f"fake_dir={snap}"] if self.row.plain else [f"ckpt={snap}.ckpt", "metrics.ema=true"])
                points.append((f"{h:g}h", ovr + [f"memorization={str(self.table.memorization and h == max(self.table.cpu_hours)).lower()}"]))
            return points
        ckpt = self.train_dir / "checkpoints" / "last.ckpt"
        pts = [("ema", [f"ckpt={ckpt}", "metrics.ema=true"])]
        if self.table.ema_and_raw:
            pts.append(("raw", [f"ckpt={ckpt}", "metrics.ema=false"]))
        return [(n, o + ["memorization=false"]) for n, o in pts]

    def score(self, args, reference_lock: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for point, ovr in self.score_points():
            ev_dir = self.dir / f"eval_{point}"
            metrics = ev_dir / "metrics.json"
            if not metrics.exists():
                cmd = [sys.executable, "-m", "ganlab.evaluate", *self.table.score, *ovr, f"out={ev_dir}",
                       f"hydra.run.dir={ev_dir}", *args.score_override]
                t0, load0 = time.time(), load_now()
                with _reference_once(reference_lock):
                    cpu = sh(cmd, self.log, nice=args.nice)
                _update_json(ev_dir / "cost.json", cpu_seconds=round(cpu, 1), wall_seconds=round(time.time() - t0, 1),
                             load_at_start=load0, load_at_end=load_now(), command=" ".join(cmd))
            m = json.loads(metrics.read_text())
            cost = json.loads((ev_dir / "cost.json").read_text())
            out[point] = {"values": m["values"], "protocol": m["protocol"], "seconds": m.get("seconds"),
                          "cpu_seconds": cost["cpu_seconds"], "command": cost["command"],
                          **({"memorization": {k: v for k, v in m["memorization"].items() if not isinstance(v, (list, dict))}}
                             if m.get("memorization") else {})}
        return out

    def run(self, args, reference_lock: Path) -> dict[str, Any] | None:
        if self.result.exists():
            print(f"{self.name}: done, skipped", flush=True)
            return json.loads(self.result.read_text())
        if not self.trained():
            self.train(args)
        if args.train_only:
            return None
        scores = self.score(args, reference_lock)
        tr = json.loads((self.dir / "train.json").read_text())
        res = {"table": self.table.name, "row": self.row.name, "seed": self.seed, "experiment": self.row.experiment,
               "plain": self.row.plain, **tr, "attempt_records": self.attempts(), "scores": scores,
               "score_cpu_seconds": round(sum(s["cpu_seconds"] for s in scores.values()), 1),
               "machine": machine(), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write_text(json.dumps(res, indent=2), self.result)
        print(f"{self.name}: " + ", ".join(f"{k} FID {v['values'].get('fid', float('nan')):.2f}"
                                            for k, v in scores.items()), flush=True)
        return res


def _plain_step(state: Path) -> int | None:
    import torch

    try:
        return int(torch.load(state, map_location="cpu", weights_only=True)["step"])
    except Exception:  # noqa: BLE001  (a damaged state: the plain loop starts over)
        return None


class _reference_once:
    """Until one evaluation has finished (``<lock>.done``), evaluations run one at a time, so the reference
    features of the split are extracted once and cached (ganlab's reference cache) instead of per lane."""

    def __init__(self, lock: Path) -> None:
        self.lock, self.done = lock, lock.with_suffix(".done")

    def __enter__(self):
        self.f = None
        if not self.done.exists():
            self.lock.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(self.lock, "w")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, exc_type, *_):
        if self.f is not None:
            if exc_type is None:
                self.done.touch()
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()


# -- the study ---------------------------------------------------------------------------------------------
def jobs_of(table: Table, args) -> list[Job]:
    order = list(table.order)
    if args.only:
        order = [(r, int(s)) for r, s in (x.rsplit(":", 1) for x in args.only)]
    return [Job(table, table.row(r), s, Path(args.work)) for r, s in order]


def study_lock(folder: Path):
    """Held for the runner's lifetime: a second runner on the same study folder stops with a message
    instead of training the same jobs twice (the lock goes with the process, however it ends)."""
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / "runner.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise SystemExit(f"another run.py is running the study in {folder} (pid {f.read().strip() or '?'}); "
                         "wait for it or stop it first") from None
    f.seek(0), f.truncate(), f.write(str(os.getpid())), f.flush()
    return f


def run_study(table: Table, args) -> list[dict]:
    owner = study_lock(Path(args.work) / table.name)
    import ganlab.checkpoints  # noqa: F401  (imported here once: two lanes importing torch's modules at once hung)

    jobs = jobs_of(table, args)
    lock = Path(args.work) / table.name / "reference.lock"
    results: list[dict] = []
    with owner, ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for job, fut in [(j, pool.submit(j.run, args, lock)) for j in jobs]:
            try:
                r = fut.result()
                if r:
                    results.append(r)
            except RuntimeError as err:
                print(f"{job.name}: FAILED: {err}", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", choices=sorted(TABLES), required=True)
    ap.add_argument("--jobs", type=int, default=2, help="parallel lanes (one thread each)")
    ap.add_argument("--work", default=DEFAULT_WORK, help="study folder (outside the checkout; default %(default)s)")
    ap.add_argument("--out", default=None, help="results folder (default experiments/benchmark/results/<table>)")
    ap.add_argument("--only", nargs="+", metavar="ROW:SEED", help="these jobs instead of the table's list")
    ap.add_argument("--cpu-hours", type=float, nargs="+", help="faces: the CPU-hour marks instead of the table's")
    ap.add_argument("--nice", type=int, default=10, help="niceness of every job (absolute, default %(default)s)")
    ap.add_argument("--list", action="store_true", help="print the jobs and their state, run nothing")
    ap.add_argument("--aggregate", action="store_true", help="only write the results from finished jobs")
    ap.add_argument("--train-only", action="store_true", help="train, score in a later call")
    ap.add_argument("--override", nargs="*", default=[], help="extra ganlab.train overrides for every job")
    ap.add_argument("--score-override", nargs="*", default=[], help="extra ganlab.evaluate overrides")
    ap.add_argument("--plain-override", nargs="*", default=[], help="extra plain_loop.py arguments")
    args = ap.parse_args(argv)
    table = TABLES[args.table]
    if args.cpu_hours:
        table = dataclasses.replace(table, cpu_hours=tuple(sorted(args.cpu_hours)))
    if args.list:
        for j in jobs_of(table, args):
            state = "done" if j.result.exists() else "trained" if j.trained() else (
                f"started (step {j.newest_step()})" if j.dir.exists() else "to do")
            print(f"{j.name:24s} {state}")
        return
    if not args.aggregate:
        run_study(table, args)
    if not args.train_only:
        from experiments.benchmark.report import write_results

        write_results(table, Path(args.work) / table.name, Path(args.out or HERE / "results" / table.name))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
