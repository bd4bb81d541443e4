"""Small face sets: does discriminator augmentation (DiffAugment, ADA, + LeCam) help at CPU-sized budgets?

    OMP_NUM_THREADS=1 python experiments/limited_data/reference.py        # once: all-6,000 reference features
    python experiments/limited_data/run.py --jobs 2                       # the grid: 3 sizes x 4 arms x 2 seeds, 500 steps
    python experiments/limited_data/run.py --sizes 1000 --arms none diffaug ada --seeds 0 --steps 3000 \
        --work /tmp/ganlab_limited_data_long --out experiments/limited_data/results_long   # the longer budget
    python experiments/limited_data/run.py --aggregate                    # tables + grids from finished jobs

Every job trains ``experiment=<--experiment>`` (default ``faces_cpu30``: DCGAN at base width 16, BCE,
EMA) on ``data.max_images=N`` of the 6,000 shared faces (evenly spread over the files; crop 178,
Lanczos, 64 px) for the same number of generator steps (``--steps``; the equal budget), in its own
process with ``OMP_NUM_THREADS=1``, then is scored with ``python -m ganlab.evaluate``: ``--n-fake``
fakes of the EMA generator (noise seed 0) against ALL 6,000 faces (``data.split=all``, the cached
reference of reference.py), FID / KID / precision / recall. With few fakes FID is biased upward
(it falls as n_fake grows), so these numbers rank arms at equal n_fake; they are not comparable
with 3,000- or 50,000-sample FIDs. Jobs with a result in ``--work`` are skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = ["data=celeba", "data.crop=178", "data.resize_filter=lanczos", "data.resolution=64", "data.split=all",
        "metrics.split=all", "metrics.sizes=full"]
#: the arms: overrides of ganlab.train on top of the experiment
ARMS = {
    "none": ["model/augment=none"],
    "diffaug": ["model/augment=diffaug"],
    "ada": ["model/augment=ada"],
    # LeCam's EMAs copy the current means for `start` D steps (default 1000): shortened for these budgets
    "diffaug+lecam": ["model/augment=diffaug", "model/lecam=default", "model.lecam.start=50"],
    "ada+lecam": ["model/augment=ada", "model/lecam=default", "model.lecam.start=50"],
    "lecam": ["model/lecam=default", "model.lecam.start=50"],
}
METRICS = ("fid", "kid", "kid_std", "precision", "recall")
#: training signals summarised from each job's losses.csv (the evidence for why an arm helps or not)
SIGNALS = ("d/real_score", "d/fake_score", "loss/d", "loss/g", "aug/r_t")
LAST = 50  # generator steps averaged at the end of training


def env1() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.setdefault("GANLAB_DATA", str(REPO.parent / "shared" / "data"))
    return env


def sh(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` (1 thread), appending to ``log``; returns the CPU seconds it used."""
    with open(log, "a") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        p = subprocess.Popen(cmd, cwd=REPO, env=env1(), stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise RuntimeError(f"exit {code}: {' '.join(cmd)} (log {log})")
    return usage.ru_utime + usage.ru_stime


def job_name(n: int, arm: str, seed: int) -> str:
    return f"n{n}_{arm}_s{seed}"


def run_job(args, n: int, arm: str, seed: int) -> dict:
    work = Path(args.work) / job_name(n, arm, seed)
    done = work / "result.json"
    if done.exists():
        return json.load(open(done))
    if args.skip_started and work.exists():  # another run.py process has this job
        print(f"{job_name(n, arm, seed)}: started elsewhere, skipped", flush=True)
        return {}
    work.mkdir(parents=True, exist_ok=True)
    log = work / "job.log"
    train = [sys.executable, "-m", "ganlab.train", f"experiment={args.experiment}", f"data.max_images={n}",
             f"generator_steps={args.steps}", "++trainer.max_time=null", f"seed={seed}", "data.seed=0",
             f"checkpoint_every={args.steps}", f"sample_every={args.steps}", f"hydra.run.dir={work / 'train'}",
             *ARMS[arm], *args.override]
    ckpt = work / "train" / "checkpoints" / "last.ckpt"
    trained = work / "train.json"
    if not trained.exists():
        t0, load0 = time.time(), os.getloadavg()
        cpu = sh(train, log)
        json.dump({"train_seconds": round(time.time() - t0, 1), "train_cpu_seconds": round(cpu, 1),
                   "load_at_start": [round(x, 2) for x in load0]},
                  open(trained, "w"))
    if args.train_only:
        return {}
    tr = json.load(open(trained))
    ev = [sys.executable, "-m", "ganlab.evaluate", *DATA, f"ckpt={ckpt}",
          f"metrics.n_fake={args.n_fake}", "metrics.metrics=[fid,kid,prc]", "metrics.kid_subset_size=" + str(min(1000, args.n_fake)),
          f"out={work / 'eval'}", f"hydra.run.dir={work / 'eval'}", "memorization_pairs=0"]
    sh(ev, log)
    m = json.load(open(work / "eval" / "metrics.json"))
    res = {"n_images": n, "arm": arm, "seed": seed, "steps": args.steps, "experiment": args.experiment,
           **tr,
           "values": {k: m["values"].get(k) for k in METRICS}, "memorization": {
               k: v for k, v in m.get("memorization", {}).items() if not isinstance(v, (list, dict))},
           "protocol": m["protocol"], "commands": {"train": " ".join(train), "evaluate": " ".join(ev)}}
    json.dump(res, open(done, "w"), indent=2)
    print(f"{job_name(n, arm, seed)}: FID {res['values']['fid']:.1f} ({tr['train_seconds']:.0f} s training)", flush=True)
    return res


def diagnostics(losses: Path) -> dict:
    """Mean of each logged signal over the last LAST generator steps, and ADA's final p."""
    if not losses.exists():
        return {}
    rows = list(csv.DictReader(open(losses)))[-LAST:]
    out = {}
    for key in SIGNALS:
        vals = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
        if vals:
            out[f"{key} (mean of last {LAST} steps)"] = round(sum(vals) / len(vals), 4)
    if rows and rows[-1].get("aug/p") not in (None, ""):
        out["aug/p (final)"] = round(float(rows[-1]["aug/p"]), 4)
    return out


def grid_image(work: Path, n: int, arms: list[str], seed: int, out: Path) -> None:
    """Arms side by side, 16 generated samples each (EMA generator, noise seed 0), one PNG per size."""
    import torch
    from PIL import Image, ImageDraw
    from torchvision.utils import make_grid

    from ganlab.metrics.fakes import GanSamples
    from ganlab.models import load_gan

    tiles = []
    for arm in arms:
        ck = work / job_name(n, arm, seed) / "train" / "checkpoints" / "last.ckpt"
        if not ck.exists():
            continue
        imgs = GanSamples.create(load_gan(str(ck), map_location="cpu"), 16, seed=0).images(slice(0, 16))
        g = make_grid(imgs, nrow=4, padding=2).permute(1, 2, 0).numpy()
        tile = Image.new("RGB", (g.shape[1], g.shape[0] + 16), "white")
        tile.paste(Image.fromarray(g), (0, 16))
        ImageDraw.Draw(tile).text((2, 2), arm, fill="black")
        tiles.append(tile)
    if not tiles:
        return
    w = sum(t.width for t in tiles) + 8 * (len(tiles) - 1)
    canvas = Image.new("RGB", (w, tiles[0].height), "white")
    x = 0
    for t in tiles:
        canvas.paste(t, (x, 0))
        x += t.width + 8
    canvas.save(out)


def aggregate(args) -> None:
    work, out = Path(args.work), Path(args.out)
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    results = [json.load(open(p)) for p in sorted(work.glob("*/result.json"))]
    for r in results:
        r["diagnostics"] = diagnostics(work / job_name(r["n_images"], r["arm"], r["seed"]) / "train" / "losses.csv")
        json.dump(r, open(out / "jobs" / f"{job_name(r['n_images'], r['arm'], r['seed'])}.json", "w"), indent=2)
    sizes = sorted({r["n_images"] for r in results})
    arms = [a for a in ARMS if any(r["arm"] == a for r in results)]
    tables = []
    for key, label, scale, fmt in (("fid", "FID", 1, "{:.1f}"), ("kid", "KID x1e3", 1e3, "{:.1f}"),
                                   ("precision", "precision", 1, "{:.3f}"), ("recall", "recall", 1, "{:.3f}")):
        rows = [f"**{label}** (n_fake = {args.n_fake}, all 6,000 reals; mean over seeds, each seed in brackets)", "",
                f"| images | {' | '.join(arms)} |", "|---:|" + "---:|" * len(arms)]
        for n in sizes:
            cells = []
            for a in arms:
                vals = [r["values"][key] for r in sorted(results, key=lambda r: r["seed"])
                        if r["n_images"] == n and r["arm"] == a]
                if not vals:
                    cells.append("not run")
                else:  # the mean, then each seed's value in seed order
                    each = " / ".join(fmt.format(scale * v) for v in vals)
                    cells.append(fmt.format(scale * sum(vals) / len(vals)) + (f" ({each})" if len(vals) > 1 else ""))
            rows.append(f"| {n} | {' | '.join(cells)} |")
        tables.append("\n".join(rows))
    diag = [f"**Training signals** (mean of the last {LAST} generator steps of `losses.csv`; ADA's p at the end)", "",
            "| images | arm | seed | D(real) | D(fake) | loss/d | loss/g | ADA p | ADA r_t |", "|---:|---|---:" + "|---:" * 6 + "|"]
    for r in sorted(results, key=lambda r: (r["n_images"], list(ARMS).index(r["arm"]), r["seed"])):
        d = r["diagnostics"]
        cell = [d.get(f"{k} (mean of last {LAST} steps)") for k in SIGNALS[:4]] + [d.get("aug/p (final)"),
                d.get(f"aug/r_t (mean of last {LAST} steps)")]
        diag.append(f"| {r['n_images']} | {r['arm']} | {r['seed']} | "
                    + " | ".join("-" if v is None else f"{v:.3f}" for v in cell) + " |")
    secs = [r["train_seconds"] for r in results]
    cpu = [r["train_cpu_seconds"] for r in results]
    md = ["# limited_data results", "", *[t + "\n" for t in tables], "\n".join(diag) + "\n",
          f"{len(results)} jobs; training per job {min(cpu):.0f}-{max(cpu):.0f} CPU-seconds, "
          f"{min(secs):.0f}-{max(secs):.0f} s wall ({results[0]['steps']} generator steps, 1 thread each)."
          if results else "no jobs"]
    (out / "results.md").write_text("\n".join(md) + "\n")
    json.dump(results, open(out / "results.json", "w"), indent=2)
    for n in sizes:
        for seed in sorted({r["seed"] for r in results}):
            grid_image(work, n, arms, seed, out / f"samples_n{n}_s{seed}.png")
    print((out / "results.md").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 6000])
    ap.add_argument("--arms", nargs="+", default=["none", "diffaug", "ada", "diffaug+lecam"], choices=list(ARMS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=500, help="generator steps per job (the equal budget)")
    ap.add_argument("--n-fake", type=int, default=300)
    ap.add_argument("--experiment", default="faces_cpu30")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", default="/tmp/ganlab_limited_data")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--aggregate", action="store_true", help="only write tables and grids")
    ap.add_argument("--train-only", action="store_true", help="train the jobs, score them in a later call")
    ap.add_argument("--skip-started", action="store_true",
                    help="skip jobs whose work folder exists (another run.py is on them): lanes in parallel")
    ap.add_argument("--no-aggregate", action="store_true", help="do not write tables and grids at the end")
    ap.add_argument("override", nargs="*", help="extra ganlab.train overrides for every job")
    args = ap.parse_args()
    if not args.aggregate:
        todo = [(n, a, s) for s in args.seeds for n in args.sizes for a in args.arms]
        with ThreadPoolExecutor(args.jobs) as pool:
            for f in [pool.submit(run_job, args, *t) for t in todo]:
                try:
                    f.result()
                except RuntimeError as err:
                    print(f"FAILED: {err}", flush=True)
    if not (args.train_only or args.no_aggregate):
        aggregate(args)


if __name__ == "__main__":
    main()
