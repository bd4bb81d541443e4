"""Does synthetic data from a conditional GAN help a classifier when real data is scarce?

For each k (real images per class) and seed, on Fashion-MNIST:

1. draw k real training images per class (seeded) and write them as official-format IDX files;
2. train the ``cgan_fashion_quick`` conditional GAN on exactly those images (``ganlab.train``,
   the one training loop, ``--gan-steps`` generator steps);
3. write m synthetic images per class with ``ganlab.generate`` (EMA generator, ImageFolder layout);
4. train the same classifier (:class:`ganlab.metrics.classifier.CompactCNN`, ``--clf-steps`` steps
   of batch 128, identical settings and seed in every arm) on
   (a) ``real``       - the k real images per class,
   (b) ``real+synth`` - the real images and the m synthetic ones per class, each half of every batch,
   (c) ``synth``      - the synthetic images only (Classification Accuracy Score, Ravuri & Vinyals 2019),
   and score it on the full real test set (10,000 images);
5. afterwards (``aggregate``): mean and std over seeds, label fidelity of each job's synthetic images
   (the label-fidelity classifier of ``ganlab.metrics.classifier``, trained on all 60,000 real
   training images), a table (``results.md``), a plot (``accuracy_vs_k.png``) and ``results.json``.

    python experiments/augmentation/run.py                      # the whole study, one job at a time
    python experiments/augmentation/run.py --jobs 2              # 2 jobs in parallel (1 thread each)
    python experiments/augmentation/run.py --ks 10 50 --seeds 0  # a smaller grid

Jobs that already have ``<work>/jobs/k{k}_s{seed}.json`` are skipped (rerun with ``--fresh``).
Large files (GAN runs, synthetic images) stay in ``--work`` (default: a folder in /tmp); only the
table, plot and JSON are written to ``--out`` (default: this folder's ``results/``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARMS = ("real", "real+synth", "synth")


def data_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    return Path(os.environ.get("GANLAB_DATA") or REPO.parent / "shared" / "data") / "fashion-mnist"


def cpu_seconds() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def full_datamodule(root: Path, cache: Path):
    from ganlab.data.datamodule import GANDataModule

    dm = GANDataModule(source="fashion_mnist", root=str(root), resolution=28, channels=1, labels="class",
                       cache_dir=str(cache / "data"), num_workers=1)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def write_idx(path: Path, array) -> None:
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes(), compresslevel=1))


def real_subset(dm, k: int, seed: int):
    """k training images per class, drawn without replacement with ``default_rng(seed)``."""
    import numpy as np

    y = np.asarray(dm.split_labels("train"))
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c in range(10)]))
    return np.asarray(dm.split_images("train"))[idx], y[idx]


# -- one job -------------------------------------------------------------------------------------------------
def run_job(args, k: int, seed: int) -> dict:
    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict
    from PIL import Image

    from ganlab.generate import generate
    from ganlab.metrics.classifier import accuracy_report, predict, train_classifier
    from ganlab.train import train

    torch.set_num_threads(args.threads)
    work = Path(args.work) / f"k{k}_s{seed}"
    work.mkdir(parents=True, exist_ok=True)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    times: dict[str, float] = {}
    dm = full_datamodule(data_root(args.data), Path(args.work) / "cache")
    x_real, y_real = real_subset(dm, k, seed)
    x_test, y_test = np.asarray(dm.split_images("test")), np.asarray(dm.split_labels("test"))

    # 1-2: the cGAN on exactly these images, through the normal training entry point
    sub = work / "fashion-subset"
    sub.mkdir(exist_ok=True)
    write_idx(sub / "train-images-idx3-ubyte.gz", x_real[:, 0])
    write_idx(sub / "train-labels-idx1-ubyte.gz", y_real)
    write_idx(sub / "t10k-images-idx3-ubyte.gz", x_test[:10, 0])
    write_idx(sub / "t10k-labels-idx1-ubyte.gz", y_test[:10])
    overrides = [
        "experiment=cgan_fashion_quick", f"data.root={sub}", f"data.cache_dir={work / 'cache'}", "data.num_workers=1",
        f"generator_steps={args.gan_steps}", f"seed={seed}", f"sample_every={max(args.gan_steps // 4, 1)}",
        f"checkpoint_every={args.gan_steps}", "trainer.accelerator=cpu", "callbacks=[model_checkpoint,sample_grid]",
        "logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        f"paths.root_dir={work}", f"paths.output_dir={work / 'gan'}", f"paths.cache_dir={work / 'cache'}",
        *args.gan_override,
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    t = time.perf_counter()
    train(cfg)
    times["gan_train"] = time.perf_counter() - t

    # 3: m synthetic images per class with ganlab.generate
    t = time.perf_counter()
    syn_dir = work / "synthetic"
    manifest = generate({"ckpt": str(work / "gan" / "checkpoints" / "last.ckpt"), "out": str(syn_dir),
                         "per_class": args.m, "seed": seed, "progress": False, "overwrite": True,
                         "device": "cpu"})
    x_syn = np.stack([np.asarray(Image.open(syn_dir / r["file"]))[None] for r in manifest["images"]])
    y_syn = np.array([r["class_index"] for r in manifest["images"]], dtype=np.int64)
    np.savez_compressed(work / "synthetic.npz", x=x_syn, y=y_syn)
    times["generate"] = time.perf_counter() - t

    # 4: the same classifier on the three training sets
    result: dict = {"k": k, "seed": seed, "m": args.m, "gan_steps": args.gan_steps, "clf_steps": args.clf_steps,
                    "n_real": int(len(x_real)), "n_synth": int(len(x_syn)), "accuracy": {}, "per_class": {}}
    sets = {
        "real": (x_real, y_real, None),
        "real+synth": (np.concatenate([x_real, x_syn]), np.concatenate([y_real, y_syn]),
                       np.concatenate([np.full(len(x_real), 0.5 / len(x_real)), np.full(len(x_syn), 0.5 / len(x_syn))])),
        "synth": (x_syn, y_syn, None),
    }
    for arm, (x, y, w) in sets.items():
        t = time.perf_counter()
        clf = train_classifier(x, y, num_classes=10, steps=args.clf_steps, batch_size=128, seed=seed,
                               sample_weights=w)
        rep = accuracy_report(predict(clf, x_test), y_test, "class", dm.class_names)
        result["accuracy"][arm] = rep["accuracy"]
        result["per_class"][arm] = {n: v["accuracy"] for n, v in rep["per_class"].items()}
        times[f"clf_{arm}"] = time.perf_counter() - t
    result["seconds"] = {k_: round(v, 1) for k_, v in times.items()}
    result["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    result["cpu_seconds"] = round(cpu_seconds() - cpu0, 1)
    result["threads"] = args.threads
    return result


# -- aggregate -------------------------------------------------------------------------------------------------
def aggregate(args, jobs: list[dict], clf_info: dict | None, fidelity: dict) -> dict:
    import numpy as np

    ks = sorted({j["k"] for j in jobs})
    rows = []
    for k in ks:
        js = [j for j in jobs if j["k"] == k]
        row = {"k": k, "seeds": sorted(j["seed"] for j in js)}
        for arm in ARMS:
            v = np.array([j["accuracy"][arm] for j in js])
            row[arm] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                        "values": v.tolist()}
        lf = [fidelity[f"k{k}_s{j['seed']}"] for j in js if f"k{k}_s{j['seed']}" in fidelity]
        if lf:
            row["label_fidelity"] = {"mean": float(np.mean(lf)), "std": float(np.std(lf, ddof=1)) if len(lf) > 1 else 0.0}
        d = np.array([j["accuracy"]["real+synth"] - j["accuracy"]["real"] for j in js])
        row["gain_real+synth"] = {"mean": float(d.mean()), "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0}
        rows.append(row)
    cpu = sum(j["cpu_seconds"] for j in jobs) + (clf_info or {}).get("cpu_seconds", 0.0)
    return {"rows": rows, "jobs": jobs, "label_fidelity_classifier": clf_info,
            "cpu_seconds_total": round(cpu, 1),
            "settings": {"m": args.m, "gan_steps": args.gan_steps, "clf_steps": args.clf_steps,
                         "threads": args.threads, "gan_override": args.gan_override}}


def write_outputs(summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    s = summary["settings"]
    lines = [f"m = {s['m']} synthetic images per class; cGAN: {s['gan_steps']} generator steps; classifier: "
             f"{s['clf_steps']} steps of batch 128; accuracy on the 10,000 real test images, mean ± std over seeds.",
             "", "| k real / class | seeds | real only | real + synthetic | synthetic only (CAS) | gain from synthetic "
             "| cGAN label fidelity |", "| ---: | :---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in summary["rows"]:
        f = lambda a: f"{100 * r[a]['mean']:.1f} ± {100 * r[a]['std']:.1f}"  # noqa: E731
        g = r["gain_real+synth"]
        lf = r.get("label_fidelity")
        lf_text = "" if not lf else f"{100 * lf['mean']:.1f} ± {100 * lf['std']:.1f}"
        lines.append(f"| {r['k']} | {len(r['seeds'])} | {f('real')} | {f('real+synth')} | {f('synth')} | "
                     f"{100 * g['mean']:+.1f} ± {100 * g['std']:.1f} | {lf_text} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ks = [r["k"] for r in summary["rows"]]
    for arm, label, marker in (("real", "real only", "o"), ("real+synth", "real + synthetic", "s"),
                               ("synth", "synthetic only (CAS)", "^")):
        ax.errorbar(ks, [100 * r[arm]["mean"] for r in summary["rows"]], yerr=[100 * r[arm]["std"] for r in summary["rows"]],
                    label=label, marker=marker, capsize=3)
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("real training images per class (k)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Fashion-MNIST, CompactCNN; m = {s['m']} synthetic / class")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_k.png")


def label_fidelity(args, names: list[str]) -> tuple[dict | None, dict]:
    """Train (or load) the full-data label-fidelity classifier; score every job's synthetic images."""
    import numpy as np
    import torch

    from ganlab.metrics.classifier import get_label_classifier, predict

    torch.set_num_threads(args.threads)
    c0, t0 = cpu_seconds(), time.perf_counter()
    dm = full_datamodule(data_root(args.data), Path(args.work) / "cache")
    steps = {"steps": args.fidelity_steps} if args.fidelity_steps else {}
    clf, info = get_label_classifier(dm, cache_dir=str(Path(args.work) / "cache" / "classifier"), **steps)
    info = {"real_test_accuracy": info.get("real_heldout", {}).get("accuracy"),
            "train_seconds": info.get("train_seconds"), "from_cache": info.get("from_cache"),
            "steps": info.get("settings", {}).get("steps")}
    fid = {}
    for name in names:
        z = Path(args.work) / name / "synthetic.npz"
        if z.exists():
            with np.load(z) as d:
                fid[name] = float((predict(clf, d["x"]) == d["y"]).mean())
    info["cpu_seconds"] = round(cpu_seconds() - c0, 1)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    return info, fid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ks", type=int, nargs="+", default=[10, 50, 100, 500])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--m", type=int, default=500, help="synthetic images per class")
    p.add_argument("--gan-steps", type=int, default=2000)
    p.add_argument("--clf-steps", type=int, default=400)
    p.add_argument("--fidelity-steps", type=int, default=None,
                   help="steps of the full-data label-fidelity classifier (default: ganlab's)")
    p.add_argument("--gan-override", nargs="*", default=[], help="extra Hydra overrides for the cGAN")
    p.add_argument("--jobs", type=int, default=1, help="jobs run in parallel (subprocesses)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per job (1: on a busy machine 2 OpenMP threads per process were 10-20x slower)")
    p.add_argument("--data", default=None, help="Fashion-MNIST folder (default: $GANLAB_DATA/fashion-mnist)")
    p.add_argument("--work", default="/tmp/ganlab-augmentation")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--fresh", action="store_true", help="rerun jobs that already have results")
    p.add_argument("--no-aggregate", action="store_true", help="only run the jobs (aggregate in a later call)")
    p.add_argument("--only", type=int, nargs=2, metavar=("K", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("--prepare-classifier", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    jobs_dir = Path(args.work) / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)

    if args.only:
        k, seed = args.only
        res = run_job(args, k, seed)
        (jobs_dir / f"k{k}_s{seed}.json").write_text(json.dumps(res, indent=1))
        print(json.dumps({x: res[x] for x in ("k", "seed", "accuracy", "seconds", "cpu_seconds")}), flush=True)
        return

    if args.prepare_classifier:  # train + cache the label-fidelity classifier (runs beside the jobs)
        info, _ = label_fidelity(args, [])
        (Path(args.work) / "classifier.json").write_text(json.dumps(info, indent=1))
        return

    t0, c0 = time.perf_counter(), cpu_seconds()
    todo = [(k, s) for k in args.ks for s in args.seeds
            if args.fresh or not (jobs_dir / f"k{k}_s{s}.json").exists()]
    # biggest jobs first, so parallel runs end together
    todo.sort(key=lambda ks: -ks[0])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    passthrough = ["--m", str(args.m), "--gan-steps", str(args.gan_steps), "--clf-steps", str(args.clf_steps),
                   "--threads", str(args.threads), "--work", args.work,
                   *(["--fidelity-steps", str(args.fidelity_steps)] if args.fidelity_steps else []),
                   *(["--data", args.data] if args.data else []),
                   *(["--gan-override", *args.gan_override] if args.gan_override else [])]
    running: list[tuple[subprocess.Popen, tuple]] = []
    failed = []
    clf_proc = None
    if not args.no_aggregate and not (Path(args.work) / "classifier.json").exists():
        clf_log = open(Path(args.work) / "classifier.log", "w")
        clf_proc = subprocess.Popen([sys.executable, __file__, "--prepare-classifier", *passthrough],
                                    stdout=clf_log, stderr=subprocess.STDOUT, env=env)
    while todo or running:
        while todo and len(running) < args.jobs:
            k, s = todo.pop(0)
            log = open(Path(args.work) / f"k{k}_s{s}.log", "w")
            cmd = [sys.executable, __file__, "--only", str(k), str(s), *passthrough]
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), (k, s)))
            print(f"started k={k} seed={s}", flush=True)
        time.sleep(2)
        for proc, ks in list(running):
            if proc.poll() is not None:
                running.remove((proc, ks))
                if proc.returncode:
                    failed.append(ks)
                    print(f"FAILED k={ks[0]} seed={ks[1]} (see {args.work}/k{ks[0]}_s{ks[1]}.log)", flush=True)
                else:
                    acc = json.loads((jobs_dir / f"k{ks[0]}_s{ks[1]}.json").read_text())["accuracy"]
                    print(f"done k={ks[0]} seed={ks[1]}: {acc}", flush=True)
    if failed:
        sys.exit(f"{len(failed)} job(s) failed: {failed}")
    if args.no_aggregate:
        return
    if clf_proc is not None and clf_proc.wait():
        sys.exit(f"the label-fidelity classifier failed (see {args.work}/classifier.log)")
    names = [f"k{k}_s{s}" for k in args.ks for s in args.seeds]
    clf_info, fid = label_fidelity(args, names)
    prepared = Path(args.work) / "classifier.json"
    if prepared.exists():  # trained by the --prepare-classifier process: its cost, not the cache load's
        clf_info = {**clf_info, **{k: v for k, v in json.loads(prepared.read_text()).items() if k != "from_cache"}}
    jobs = [json.loads((jobs_dir / f"{n}.json").read_text()) for n in names]
    summary = aggregate(args, jobs, clf_info, fid)
    summary["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
    summary["host"] = {"cpus": os.cpu_count(), "parallel_jobs": args.jobs, "torch_threads_per_job": args.threads}
    write_outputs(summary, Path(args.out))
    print((Path(args.out) / "results.md").read_text())
    print(f"total CPU time of the study: {summary['cpu_seconds_total'] / 60:.1f} min "
          f"(this invocation: {(cpu_seconds() - c0) / 60:.1f} min CPU, {summary['wall_seconds_this_invocation'] / 60:.1f} "
          "min wall)")


if __name__ == "__main__":
    main()
