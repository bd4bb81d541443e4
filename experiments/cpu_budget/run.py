"""What does ganlab buy for 30 minutes of CPU?  ganlab's CPU recipe vs a hand-written DCGAN loop.

    OMP_NUM_THREADS=1 python experiments/cpu_budget/run.py                 # 30 min per arm
    python experiments/cpu_budget/run.py --minutes 3 --work /tmp/cb_probe  # a quick check

Both arms start at the same moment and run CONCURRENTLY on the same machine, each in its own
process with ``OMP_NUM_THREADS=1`` (one core each, same load, same wall-clock budget):

* ``plain``: ``plain_dcgan.py`` (Radford widths, BCE, Adam 2e-4/0.5, batch 64, no EMA), ``--minutes``;
* ``ganlab``: ``python -m ganlab.train experiment=<--experiment>`` with ``++trainer.max_time``.

Then both are scored, again concurrently and one thread each, with ``python -m ganlab.evaluate``:
3,000 fakes (plain: its PNGs; ganlab: the EMA generator of ``last.ckpt``, noise seed 0) against all
6,000 shared faces (``data.split=all``: crop 178, Lanczos, 64 px; reference features cached).
``uptime`` load is recorded before, every 60 s during, and after the runs. Writes ``results.json``,
``results.md`` and ``samples_plain.png`` / ``samples_ganlab.png`` (64 generated images each) here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
#: the reference every score uses: all 6,000 shared faces, crop 178, Lanczos, 64 px
DATA = ["data=celeba", "data.crop=178", "data.resize_filter=lanczos", "data.resolution=64", "data.split=all",
        "metrics.split=all", "metrics.sizes=full"]
METRICS = ("fid", "kid", "kid_std", "precision", "recall")


def env1() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.setdefault("GANLAB_DATA", str(REPO.parent / "shared" / "data"))
    return env


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def machine() -> dict:
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "threads_per_arm": 1}


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, cwd=REPO, env=env1(), stdout=open(log, "w"), stderr=subprocess.STDOUT)


def wait_all(procs: dict[str, subprocess.Popen], loads: list[str] | None = None) -> None:
    while any(p.poll() is None for p in procs.values()):
        time.sleep(60 if loads is not None else 5)
        if loads is not None:
            loads.append(load())
    bad = {k: p.returncode for k, p in procs.items() if p.returncode}
    if bad:
        raise SystemExit(f"failed: {bad} (logs in the work folder)")


def train(args, work: Path) -> dict:
    mins = args.minutes
    plain = [sys.executable, str(HERE / "plain_dcgan.py"), "--minutes", str(mins), "--out", str(work / "plain"),
             "--n-fake", str(args.n_fake), "--seed", str(args.seed)]
    hh, mm = divmod(int(round(mins * 60)), 3600)
    ganlab = [sys.executable, "-m", "ganlab.train", f"experiment={args.experiment}",
              f"++trainer.max_time=00:{hh:02d}:{mm // 60:02d}:{mm % 60:02d}", f"seed={args.seed}",
              f"hydra.run.dir={work / 'ganlab'}", *args.override]
    info = {"load_before": load(), "commands": {"plain": " ".join(plain), "ganlab": " ".join(ganlab)}}
    t0 = time.time()
    loads: list[str] = []
    wait_all({"plain": start(plain, work / "plain.log"), "ganlab": start(ganlab, work / "ganlab.log")}, loads)
    info.update(load_during=loads, load_after=load(), wall_seconds=round(time.time() - t0, 1))
    return info


def score(args, work: Path) -> dict:
    ev = [sys.executable, "-m", "ganlab.evaluate", *DATA, f"metrics.n_fake={args.n_fake}", "metrics.metrics=[fid,kid,prc]"]
    cmds = {"plain": [*ev, f"fake_dir={work / 'plain' / 'fakes'}", f"out={work / 'plain' / 'eval'}",
                      f"hydra.run.dir={work / 'plain' / 'eval'}"],
            "ganlab": [*ev, f"ckpt={work / 'ganlab' / 'checkpoints' / 'last.ckpt'}", f"out={work / 'ganlab' / 'eval'}",
                       f"hydra.run.dir={work / 'ganlab' / 'eval'}"]}
    before = load()

    def scored(arm: str) -> bool:  # an earlier call already scored this arm with the same n_fake
        path = work / arm / "eval" / "metrics.json"
        return path.exists() and json.load(open(path))["protocol"]["n_fake"] == args.n_fake

    wait_all({k: start(c, work / f"eval_{k}.log") for k, c in cmds.items() if not scored(k)})
    out = {"load_before": before, "load_after": load(), "commands": {k: " ".join(c) for k, c in cmds.items()}}
    for arm in cmds:
        m = json.load(open(work / arm / "eval" / "metrics.json"))
        out[arm] = {**{k: m["values"].get(k) for k in METRICS}, "protocol": m["protocol"]}
    return out


def steps(work: Path) -> dict:
    import torch

    plain = json.load(open(work / "plain" / "train.json"))["generator_steps"]
    ck = torch.load(work / "ganlab" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    ganlab = ck.get("generator_step") or ck.get("state_dict", {}).get("generator_step")
    if ganlab is None:
        from ganlab.models import load_gan
        ganlab = int(load_gan(str(work / "ganlab" / "checkpoints" / "last.ckpt"), map_location="cpu").generator_step)
    return {"plain": int(plain), "ganlab": int(ganlab)}


def grids(work: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from ganlab.callbacks.sample_grid import save_grid
    from ganlab.metrics.fakes import GanSamples
    from ganlab.models import load_gan

    files = sorted((work / "plain" / "fakes").glob("*.png"))[:64]
    plain = torch.from_numpy(np.stack([np.asarray(Image.open(f)) for f in files])).permute(0, 3, 1, 2)
    save_grid(plain, HERE / "samples_plain.png", nrow=8)
    model = load_gan(str(work / "ganlab" / "checkpoints" / "last.ckpt"), map_location="cpu")
    save_grid(GanSamples.create(model, 64, seed=0).images(slice(0, 64)), HERE / "samples_ganlab.png", nrow=8)


def report(res: dict) -> str:
    s = res["score"]
    rows = ["| arm | generator steps | FID | KID x1e3 | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
    for arm in ("plain", "ganlab"):
        m = s[arm]
        rows.append(f"| {arm} | {res['steps'][arm]} | {m['fid']:.1f} | {1e3 * m['kid']:.1f} ± {1e3 * m['kid_std']:.1f}"
                    f" | {m['precision']:.3f} | {m['recall']:.3f} |")
    ratio = s["ganlab"]["fid"] / s["plain"]["fid"]
    t = res["train"]
    lines = [f"# cpu_budget: {res['minutes']} min per arm, run {res['started']}", "",
             f"{res['n_fake']} fakes per arm vs all 6,000 faces (crop 178, Lanczos, 64 px), InceptionV3 pool3.", "",
             *rows, "",
             f"ganlab FID / plain FID = {ratio:.3f} (target <= 0.5: {'met' if ratio <= 0.5 else 'NOT met'})", "",
             f"- machine: {res['machine']}", f"- load before training: `{t['load_before']}`",
             f"- load after training: `{t['load_after']}`", f"- load during (every 60 s): " +
             "; ".join(f"`{x.split('load average:')[-1].strip()}`" for x in t["load_during"]),
             f"- load before / after scoring: `{s['load_before']}` / `{s['load_after']}`",
             f"- plain: `{t['commands']['plain']}`", f"- ganlab: `{t['commands']['ganlab']}`",
             f"- scoring: `{s['commands']['ganlab']}` (and `fake_dir=` for plain)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--experiment", default="faces_cpu30")
    ap.add_argument("--n-fake", type=int, default=3000, help="fakes per arm for the FID (the issue: 3,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/ganlab_cpu_budget")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--score-only", action="store_true", help="score an existing --work folder")
    ap.add_argument("--train-only", action="store_true", help="train both arms, score later (--score-only)")
    ap.add_argument("override", nargs="*", help="extra ganlab.train overrides for the ganlab arm")
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    res = json.load(open(res_path)) if args.score_only and res_path.exists() else {}
    if not args.score_only:
        res = {"minutes": args.minutes, "experiment": args.experiment, "overrides": args.override,
               "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
               "train": train(args, work)}
        json.dump(res, open(res_path, "w"), indent=2)
    res["steps"] = steps(work)
    json.dump(res, open(res_path, "w"), indent=2)
    if args.train_only:
        return
    res["steps"] = steps(work)
    res["score"] = score(args, work)
    res["n_fake"] = args.n_fake
    json.dump(res, open(res_path, "w"), indent=2)
    grids(work)
    (out / "results.md").write_text(report(res))
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
