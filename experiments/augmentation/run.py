"""Does synthetic data from a conditional GAN help a classifier beyond classic augmentation?

For each k (real images per class) and seed, on Fashion-MNIST:

1. draw k real training images per class (seeded) and write them as official-format IDX files;
2. train the strong conditional recipe ``cgan_fashion_strong`` (CBN generator, projection D with
   spectral norm, hinge, EMA, DiffAugment), CPU-sized (``--gan-overrides``), on exactly those
   images (``ganlab.train``, ``--gan-steps`` generator steps);
3. write m synthetic images per class with ``ganlab.generate`` twice: without selection, and with
   discriminator rejection sampling (``filter=discriminator``, :data:`SELECTION`) from the GAN's own D;
4. train the same classifier (:class:`ganlab.metrics.classifier.CompactCNN`, ``--clf-steps`` steps of
   batch 128, same seed in every arm) on the arms of :data:`ARMS` and score it on the 10,000 real
   test images (overall and per class);
5. score each synthetic set: label fidelity (the label-fidelity classifier trained on all 60,000
   real training images) and precision / recall (Kynkaanniemi et al., k = 3) against 5,000 real
   training images in that classifier's 128-d feature space (Inception on this CPU is too slow);
6. ``aggregate``: mean and 95 % confidence interval (Student t over seeds) of every arm and of the
   paired gain over real + classic augmentation, table, plots and ``results.json``.

    python experiments/augmentation/run.py --jobs 2          # the study in results/
    python experiments/augmentation/run.py --ks 10 --seeds 0  # a smaller grid

Jobs that already have ``<work>/jobs/k{k}_s{seed}.json`` are skipped (rerun with ``--fresh``).
Large files (GAN runs, synthetic images) stay in ``--work``; only tables, plots and JSON go to ``--out``.
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
# arm: (classic augmentation, synthetic set or None, synthetic fraction of each batch; 1.0 = synthetic only)
ARMS = {
    "real": (False, None, 0.0),
    "real+classic": (True, None, 0.0),
    "real+classic+synth 0.25": (True, "plain", 0.25),
    "real+classic+synth 0.5": (True, "plain", 0.5),
    "real+classic+selected 0.25": (True, "selected", 0.25),
    "real+classic+selected 0.5": (True, "selected", 0.5),
    "synth only (CAS)": (False, "plain", 1.0),
    "selected only (CAS)": (False, "selected", 1.0),
}
BASELINE = "real+classic"
# the "selected" sets: discriminator rejection sampling with the GAN's own D. (filter=classifier with the
# classifier trained on the k real images per class could not fill a class at any threshold >= 0.1 in the
# first k = 50 runs: every candidate of the GAN's T-shirt/top class read as another class; see README.)
SELECTION = {"filter": "discriminator", "drs_burn_in": 500, "drs_percentile": 95, "min_acceptance": 0.01}
GAN_OVERRIDES = ["model.generator.base_width=32", "model.discriminator.base_width=32", "model.generator.z_dim=64"]

def data_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    return Path(os.environ.get("GANLAB_DATA") or REPO.parent / "shared" / "data") / "fashion-mnist"


def cpu_seconds() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def full_datamodule(root: Path, cache: Path):
    from ganlab.data.datamodule import GANDataModule
    from ganlab.data.sources import FashionMNIST

    dm = GANDataModule(source=FashionMNIST, root=str(root), resolution=28, channels=1, labels="class",
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
        f"experiment={args.experiment}", f"data.root={sub}", f"data.cache_dir={work / 'cache'}", "data.num_workers=1",
        f"generator_steps={args.gan_steps}", f"seed={seed}", f"sample_every={max(args.gan_steps // 4, 1)}",
        f"checkpoint_every={args.gan_steps}", "trainer.accelerator=cpu", "callbacks=[model_checkpoint,sample_grid]",
        "logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        f"paths.root_dir={work}", f"paths.output_dir={work / 'gan'}", f"paths.cache_dir={work / 'cache'}",
        *args.gan_overrides,
    ]
    ckpt = work / "gan" / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        with open_dict(cfg):
            cfg.pop("hydra", None)
        t = time.perf_counter()
        train(cfg)
        times["gan_train"] = time.perf_counter() - t

    # 3: m synthetic images per class with ganlab.generate, without and with selection
    synth, selection = {}, {}
    for name, extra in (("plain", {}), ("selected", dict(SELECTION))):
        t = time.perf_counter()
        out = work / f"synthetic_{name}"
        manifest = generate({"ckpt": str(ckpt), "out": str(out), "per_class": args.m, "seed": seed, "progress": False,
                             "overwrite": True, "device": "cpu", **extra})
        x = np.stack([np.asarray(Image.open(out / r["file"]))[None] for r in manifest["images"]])
        y = np.array([r["class_index"] for r in manifest["images"]], dtype=np.int64)
        np.savez_compressed(work / f"synthetic_{name}.npz", x=x, y=y)
        synth[name] = (x, y)
        sel = manifest["selection"]
        selection[name] = {"per_class_acceptance": {c: v["acceptance_rate"] for c, v in sel["per_class"].items()},
                           "selector": sel.get("selector"), "gamma": {c: v.get("gamma_used") for c, v in
                                                                      sel["per_class"].items()}}
        times[f"generate_{name}"] = time.perf_counter() - t

    # 4: the same classifier on every arm
    result: dict = {"k": k, "seed": seed, "m": args.m, "gan_steps": args.gan_steps, "clf_steps": args.clf_steps,
                    "selection_options": SELECTION, "n_real": int(len(x_real)), "accuracy": {}, "per_class": {},
                    "selection": selection}
    for arm, (classic, which, frac) in ARMS.items():
        t = time.perf_counter()
        if which is None:
            x, y, w = x_real, y_real, None
        elif frac >= 1.0:
            (x, y), w = synth[which], None
        else:
            xs, ys = synth[which]
            x, y = np.concatenate([x_real, xs]), np.concatenate([y_real, ys])
            w = np.concatenate([np.full(len(x_real), (1 - frac) / len(x_real)), np.full(len(xs), frac / len(xs))])
        clf = train_classifier(x, y, num_classes=10, steps=args.clf_steps, batch_size=128, seed=seed,
                               sample_weights=w, hflip=classic, translate=2 if classic else 0)
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
def ci95(values) -> dict:
    """Mean and the half-width of the 95 % Student-t confidence interval over seeds."""
    import numpy as np
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "ci95": half, "values": v.tolist()}


def aggregate(args, jobs: list[dict], clf_info: dict | None, scores: dict) -> dict:
    ks = sorted({j["k"] for j in jobs})
    rows = []
    for k in ks:
        js = sorted((j for j in jobs if j["k"] == k), key=lambda j: j["seed"])
        row: dict = {"k": k, "seeds": [j["seed"] for j in js], "accuracy": {}, "gain_vs_" + BASELINE: {},
                     "per_class": {}}
        for arm in ARMS:
            row["accuracy"][arm] = ci95([j["accuracy"][arm] for j in js])
            row["gain_vs_" + BASELINE][arm] = ci95([j["accuracy"][arm] - j["accuracy"][BASELINE] for j in js])
            names = list(js[0]["per_class"][arm])
            row["per_class"][arm] = {n: float(sum(j["per_class"][arm][n] for j in js) / len(js)) for n in names}
        for which in ("plain", "selected"):
            sc = [scores[f"k{k}_s{j['seed']}"][which] for j in js if f"k{k}_s{j['seed']}" in scores]
            if sc:
                row[f"synthetic_{which}"] = {m: ci95([s[m] for s in sc]) for m in sc[0]}
            acc = [j["selection"][which]["per_class_acceptance"] for j in js]
            row[f"synthetic_{which}"] = {**row.get(f"synthetic_{which}", {}),
                                         "acceptance_mean": float(sum(sum(a.values()) / len(a) for a in acc) / len(acc)),
                                         "acceptance_per_class": {c: float(sum(a[c] for a in acc) / len(acc))
                                                                  for c in acc[0]}}
        rows.append(row)
    cpu = sum(j["cpu_seconds"] for j in jobs) + (clf_info or {}).get("cpu_seconds", 0.0)
    return {"rows": rows, "jobs": jobs, "label_fidelity_classifier": clf_info, "cpu_seconds_total": round(cpu, 1),
            "settings": {"m": args.m, "gan_steps": args.gan_steps, "clf_steps": args.clf_steps,
                         "selection": SELECTION, "experiment": args.experiment,
                         "gan_overrides": args.gan_overrides, "threads": args.threads}}


def write_outputs(summary: dict, out: Path, work: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    s = summary["settings"]
    pct = lambda d: f"{100 * d['mean']:.1f} ± {100 * d['ci95']:.1f}"  # noqa: E731
    sgn = lambda d: f"{100 * d['mean']:+.1f} ± {100 * d['ci95']:.1f}"  # noqa: E731
    lines = [f"Fashion-MNIST; GAN `{s['experiment']}` ({' '.join(s['gan_overrides'])}), {s['gan_steps']} generator "
             f"steps on the k real images per class only; m = {s['m']} synthetic images per class; selected = "
             f"`{' '.join(f'{a}={b}' for a, b in s['selection'].items())}` (rejection sampling with the GAN's own D); "
             f"CompactCNN {s['clf_steps']} steps of batch 128. Accuracy (%) on the 10,000 real test images, mean ± "
             "95 % CI (Student t over seeds).", "",
             "## Test accuracy", "", "| arm | " + " | ".join(f"k = {r['k']} ({len(r['seeds'])} seeds)"
                                                            for r in summary["rows"]) + " |",
             "| --- |" + " ---: |" * len(summary["rows"])]
    for arm in ARMS:
        lines.append(f"| {arm} | " + " | ".join(pct(r["accuracy"][arm]) for r in summary["rows"]) + " |")
    lines += ["", f"## Gain over {BASELINE} (paired by seed, points)", "",
              "| arm | " + " | ".join(f"k = {r['k']}" for r in summary["rows"]) + " |",
              "| --- |" + " ---: |" * len(summary["rows"])]
    for arm in ARMS:
        if arm != BASELINE:
            lines.append(f"| {arm} | " + " | ".join(sgn(r["gain_vs_" + BASELINE][arm]) for r in summary["rows"]) + " |")
    lines += ["", "## Synthetic sets", "", "label fidelity: accuracy of the full-data label classifier on them; "
              "precision / recall: k = 3 manifolds, 5,000 real training images, that classifier's 128-d features; "
              "kept: mean over classes of the fraction of candidates the selection kept.", "",
              "| k | set | label fidelity | precision | recall | kept |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in summary["rows"]:
        for which in ("plain", "selected"):
            d = r.get(f"synthetic_{which}", {})
            f = lambda m: pct(d[m]) if m in d else "not measured"  # noqa: E731
            lines.append(f"| {r['k']} | {which} | {f('label_fidelity')} | {f('precision')} | {f('recall')} | "
                         f"{100 * d.get('acceptance_mean', float('nan')):.1f} % |")
    lines += ["", "## Per-class test accuracy (%, mean over seeds)", ""]
    for r in summary["rows"]:
        names = list(r["per_class"][BASELINE])
        lines += [f"k = {r['k']}", "", "| arm | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
        for arm in ARMS:
            lines.append(f"| {arm} | " + " | ".join(f"{100 * r['per_class'][arm][n]:.1f}" for n in names) + " |")
        lines.append("")
    (out / "results.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ks = [r["k"] for r in summary["rows"]]
    for arm, marker in zip(ARMS, "osD^v<>x"):
        ax.errorbar(ks, [100 * r["accuracy"][arm]["mean"] for r in summary["rows"]],
                    yerr=[100 * np.nan_to_num(r["accuracy"][arm]["ci95"]) for r in summary["rows"]],
                    label=arm, marker=marker, capsize=3)
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("real training images per class (k)")
    ax.set_ylabel("test accuracy (%), mean ± 95% CI")
    ax.set_title("Fashion-MNIST, CompactCNN")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_k.png")
    plt.close(fig)
    for r in summary["rows"]:  # what the synthetic images lack: real vs synthetic, 8 per class
        name = f"k{r['k']}_s{r['seeds'][0]}"
        if (work / name / "synthetic_plain.npz").exists():
            real_vs_synthetic_figure(work / name, r["k"], out / f"fashion_mnist_vs_synthetic_k{r['k']}.png")


def real_vs_synthetic_figure(job: Path, k: int, path: Path, n: int = 8) -> None:
    """One row per class: n of the k real training images | n synthetic | n selected synthetic."""
    import gzip as gz

    import numpy as np
    from PIL import Image

    def idx(p):
        raw = gz.decompress(p.read_bytes())
        nd = raw[3]
        shape = struct.unpack(f">{nd}I", raw[4 : 4 + 4 * nd])
        return np.frombuffer(raw[4 + 4 * nd :], dtype=np.uint8).reshape(shape)

    xr, yr = idx(job / "fashion-subset" / "train-images-idx3-ubyte.gz"), idx(job / "fashion-subset" / "train-labels-idx1-ubyte.gz")
    sets = [(xr, yr)]
    for which in ("plain", "selected"):
        with np.load(job / f"synthetic_{which}.npz") as d:
            sets.append((d["x"][:, 0], d["y"]))
    rows = []
    for c in range(10):
        blocks = []
        for x, y in sets:
            imgs = x[y == c][:n]
            imgs = np.concatenate([imgs, np.zeros((n - len(imgs), 28, 28), np.uint8)]) if len(imgs) < n else imgs
            blocks.append(np.concatenate(list(imgs), axis=1))
            blocks.append(np.full((28, 6), 255, np.uint8))
        rows.append(np.concatenate(blocks[:-1], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).resize((rows[0].shape[1] * 2, 28 * 10 * 2),
                                                         Image.NEAREST).save(path)


def score_synthetic(args, names: list[str]) -> tuple[dict | None, dict]:
    """The full-data label classifier: label fidelity and precision / recall of every synthetic set."""
    import numpy as np
    import torch

    from ganlab.metrics.classifier import features, get_label_classifier, predict
    from ganlab.metrics.core import compute_metrics

    torch.set_num_threads(args.threads)
    c0, t0 = cpu_seconds(), time.perf_counter()
    dm = full_datamodule(data_root(args.data), Path(args.work) / "cache")
    steps = {"steps": args.fidelity_steps} if args.fidelity_steps else {}
    clf, info = get_label_classifier(dm, cache_dir=str(Path(args.work) / "cache" / "classifier"), **steps)
    info = {"real_test_accuracy": info.get("real_heldout", {}).get("accuracy"),
            "train_seconds": info.get("train_seconds"), "from_cache": info.get("from_cache"),
            "steps": info.get("settings", {}).get("steps")}
    rows = np.random.default_rng(0).choice(len(dm.split_images("train")), 5000, replace=False)
    real_feat = torch.from_numpy(features(clf, np.asarray(dm.split_images("train"))[np.sort(rows)]))
    out = {}
    for name in names:
        for which in ("plain", "selected"):
            z = Path(args.work) / name / f"synthetic_{which}.npz"
            if not z.exists():
                continue
            with np.load(z) as d:
                x, y = d["x"], d["y"]
            prc = compute_metrics(real_feat, torch.from_numpy(features(clf, x)), ["prc"], device="cpu")
            out.setdefault(name, {})[which] = {"label_fidelity": float((predict(clf, x) == y).mean()),
                                               "precision": float(prc["precision"]), "recall": float(prc["recall"])}
    info["cpu_seconds"] = round(cpu_seconds() - c0, 1)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    return info, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ks", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--m", type=int, default=300, help="synthetic images per class")
    p.add_argument("--gan-steps", type=int, default=1500)
    p.add_argument("--clf-steps", type=int, default=300)
    p.add_argument("--experiment", default="cgan_fashion_strong", help="the cGAN experiment config")
    p.add_argument("--fidelity-steps", type=int, default=None,
                   help="steps of the full-data label-fidelity classifier (default: ganlab's)")
    p.add_argument("--gan-overrides", nargs="*", default=GAN_OVERRIDES,
                   help="Hydra overrides for the cGAN (default: the CPU-sized widths)")
    p.add_argument("--jobs", type=int, default=1, help="jobs run in parallel (subprocesses)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per job (1: on a busy machine 2 OpenMP threads per process were 10-20x slower)")
    p.add_argument("--data", default=None, help="Fashion-MNIST folder (default: $GANLAB_DATA/fashion-mnist)")
    p.add_argument("--work", default="/tmp/ganlab-augmentation")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--fresh", action="store_true", help="rerun jobs that already have results")
    p.add_argument("--no-aggregate", action="store_true", help="only run the jobs (aggregate in a later call)")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run no job: aggregate the finished ones of the grid (missing ones are listed)")
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
        info, _ = score_synthetic(args, [])
        (Path(args.work) / "classifier.json").write_text(json.dumps(info, indent=1))
        return

    t0, c0 = time.perf_counter(), cpu_seconds()
    todo = [(k, s) for k in args.ks for s in args.seeds
            if not args.aggregate_only and (args.fresh or not (jobs_dir / f"k{k}_s{s}.json").exists())]
    # biggest jobs first, so parallel runs end together
    todo.sort(key=lambda ks: -ks[0])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    passthrough = ["--m", str(args.m), "--gan-steps", str(args.gan_steps), "--clf-steps", str(args.clf_steps),
                   "--threads", str(args.threads), "--work", args.work,
                   *(["--fidelity-steps", str(args.fidelity_steps)] if args.fidelity_steps else []),
                   *(["--data", args.data] if args.data else []),
                   "--experiment", args.experiment,
                   "--gan-overrides", *args.gan_overrides]
    running: list[tuple[subprocess.Popen, tuple]] = []
    failed = []
    clf_proc = None  # the label-fidelity classifier is trained after the jobs (at most --jobs processes at once)
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
    missing = [n for n in names if not (jobs_dir / f"{n}.json").exists()]
    names = [n for n in names if n not in missing]
    if missing:
        print(f"not run (no job result): {', '.join(missing)}", flush=True)
    clf_info, fid = score_synthetic(args, names)
    prepared = Path(args.work) / "classifier.json"
    if prepared.exists():  # trained by the --prepare-classifier process: its cost, not the cache load's
        clf_info = {**clf_info, **{k: v for k, v in json.loads(prepared.read_text()).items() if k != "from_cache"}}
    jobs = [json.loads((jobs_dir / f"{n}.json").read_text()) for n in names]
    summary = aggregate(args, jobs, clf_info, fid)
    summary["not_run"] = missing
    summary["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
    summary["host"] = {"cpus": os.cpu_count(), "parallel_jobs": args.jobs, "torch_threads_per_job": args.threads}
    summary["host"]["machine"] = " ".join(os.uname()[i] for i in (0, 2, 4))
    write_outputs(summary, Path(args.out), Path(args.work))
    print((Path(args.out) / "results.md").read_text())
    print(f"total CPU time of the study: {summary['cpu_seconds_total'] / 60:.1f} min "
          f"(this invocation: {(cpu_seconds() - c0) / 60:.1f} min CPU, {summary['wall_seconds_this_invocation'] / 60:.1f} "
          "min wall)")


if __name__ == "__main__":
    main()
