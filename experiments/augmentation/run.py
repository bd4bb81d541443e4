"""Does synthetic data from a conditional GAN help a classifier beyond classic augmentation?

Two tasks (``--tasks``, default both), each a grid of k (real training images per class) x seeds:

* ``fashion-mnist``: 10 classes, 28 px grey, scored on the 10,000 real test images;
* ``celeba-smiling``: the CelebA attribute Smiling as 2 classes (``Smiling=0`` / ``Smiling=1``) of
  the shared 6,000-face subset at 32 px (crop 140), k faces per class from the official *train*
  partition, scored on the 660 real faces of the official *test* partition. (Eyeglasses is not
  usable there: 22 of the 660 test faces wear glasses.)

For each task, k and seed:

1. draw k real training images per class (seeded) and write them in the data set's own layout
   (Fashion-MNIST IDX files / a CelebA folder of links + annotation files);
2. train the strong conditional recipe (``cgan_fashion_strong`` / ``cgan_celeba_strong``: CBN
   generator, projection D with spectral norm, hinge, EMA, DiffAugment), CPU-sized (:data:`TASKS`),
   on exactly those images (``ganlab.train``, ``--gan-steps`` generator steps);
3. write m synthetic images per class with ``ganlab.generate`` twice: without selection, and with
   discriminator rejection sampling (``filter=discriminator``, :data:`SELECTION`) from the GAN's own D;
4. train the same classifier (:class:`ganlab.metrics.classifier.CompactCNN`, ``--clf-steps`` steps of
   batch 128, same seed in every arm) on the arms of :data:`ARMS` and score it on the real test
   images (overall and per class); arms added to :data:`ARMS` later are trained for finished jobs
   from their saved images (no GAN retraining);
5. score each synthetic set: label fidelity (the label-fidelity classifier trained on the whole real
   training split), precision / recall (Kynkaanniemi et al., k = 3) against up to 5,000 real
   training images in that classifier's 128-d feature space (Inception on this CPU is too slow),
   and within-class variety (per-pixel standard deviation across a class's images, synthetic / real);
6. ``aggregate``: mean and 95 % confidence interval (Student t over seeds) of every arm and of the
   paired gain over real + classic augmentation, tables, plots and ``results.json`` per task.

    python experiments/augmentation/run.py --jobs 2                       # the study in results/
    python experiments/augmentation/run.py --tasks fashion-mnist --ks 10 --seeds 0  # a smaller grid

Jobs that already have ``<work>/jobs/<job>.json`` are skipped (rerun with ``--fresh``).
Large files (GAN runs, synthetic images, real subsets) stay in ``--work``; only tables, plots of
Fashion-MNIST / *generated* faces and JSON go to ``--out`` (never a real CelebA face).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
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
    # the recipe variant: fewer, DRS-selected synthetic images (added after the first grid; trained for the
    # finished jobs from their saved images)
    "real+classic+selected 0.1": (True, "selected", 0.1),
    # synthetic images without classic augmentation: where flips + translations lower accuracy (k >= 50),
    # `real` is the stronger baseline and these are the arms to compare with it
    "real+synth 0.25": (False, "plain", 0.25),
    "real+selected 0.1": (False, "selected", 0.1),
}
BASELINE = "real+classic"
CLASSIC = ("real", "real+classic")  # the arms without synthetic images: the stronger one is the fair baseline
# the "selected" sets: discriminator rejection sampling with the GAN's own D. (filter=classifier with the
# classifier trained on the k real images per class could not fill a class at any threshold >= 0.1 in the
# first k = 50 runs: every candidate of the GAN's T-shirt/top class read as another class; see README.)
SELECTION = {"filter": "discriminator", "drs_burn_in": 500, "drs_percentile": 95, "min_acceptance": 0.01}
GAN_OVERRIDES = ["model.generator.base_width=32", "model.discriminator.base_width=32", "model.generator.z_dim=64"]
CELEBA_ATTRIBUTE = "Smiling"
# per task: the cGAN experiment, the overrides that make it CPU-sized and fit the task's labels, the default
# k's, where its tables go (under --out) and how its test set is described
TASKS = {
    "fashion-mnist": {
        "experiment": "cgan_fashion_strong", "gan_overrides": GAN_OVERRIDES, "ks": [10, 50, 100], "out": ".",
        "title": "Fashion-MNIST", "test": "the 10,000 real test images", "job": "k{k}_s{seed}",
    },
    "celeba-smiling": {
        "experiment": "cgan_celeba_strong", "ks": [150], "out": "celeba_smiling", "job": "celeba_smiling_k{k}_s{seed}",
        "gan_overrides": ["data.resolution=32", f"data.labels=[{CELEBA_ATTRIBUTE}]", "data.label_mode=class",
                          "model.generator.num_classes=2", "model.generator.label_kind=class", *GAN_OVERRIDES],
        "title": f"CelebA {CELEBA_ATTRIBUTE} (32 px)",
        "test": "the 660 real faces of the official CelebA test partition (shared subset)",
    },
}


def data_root(arg: str | None, task: str = "fashion-mnist") -> Path:
    if arg:
        return Path(arg)
    folder = "fashion-mnist" if task == "fashion-mnist" else "celeba-subset"
    return Path(os.environ.get("GANLAB_DATA") or REPO.parent / "shared" / "data") / folder


def cpu_seconds() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def full_datamodule(root: Path, cache: Path, task: str = "fashion-mnist"):
    """The task's whole data set (train + test splits) as the study's classifiers see it."""
    from ganlab.data.datamodule import GANDataModule
    from ganlab.data.sources import CelebA, FashionMNIST

    if task == "fashion-mnist":
        dm = GANDataModule(source=FashionMNIST, root=str(root), resolution=28, channels=1, labels="class",
                           cache_dir=str(cache / "data"), num_workers=1)
    else:  # the preprocessing of conf/data/celeba.yaml (crop 140, bilinear) at 32 px, one attribute as 2 classes
        dm = GANDataModule(source=CelebA, root=str(root), resolution=32, channels=3, crop=140,
                           labels=[CELEBA_ATTRIBUTE], label_mode="class", cache_dir=str(cache / "data"), num_workers=1)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def write_idx(path: Path, array) -> None:
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes(), compresslevel=1))


def labelled_indices(y, k: int, seed: int):
    """Sorted indices of k images per class of the labels ``y``, drawn without replacement with ``default_rng(seed)``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c in np.unique(y)]))


def real_subset(dm, k: int, seed: int):
    """k training images per class, drawn without replacement with ``default_rng(seed)``."""
    import numpy as np

    y = np.asarray(dm.split_labels("train"))
    idx = labelled_indices(y, k, seed)
    return np.asarray(dm.split_images("train"))[idx], y[idx]


def write_fashion_subset(sub: Path, x, y, x_test, y_test, n_test: int | None = 10) -> None:
    """Training images ``x`` (uint8 ``(N, 1, 28, 28)``) and labels ``y`` as Fashion-MNIST IDX files in ``sub`` (what
    ``ganlab.train`` reads), with the first ``n_test`` test images (None: all) as its test split."""
    sub.mkdir(parents=True, exist_ok=True)
    write_idx(sub / "train-images-idx3-ubyte.gz", x[:, 0])
    write_idx(sub / "train-labels-idx1-ubyte.gz", y)
    write_idx(sub / "t10k-images-idx3-ubyte.gz", x_test[:n_test, 0])
    write_idx(sub / "t10k-labels-idx1-ubyte.gz", y_test[:n_test])


def celeba_subset(root: Path, sub: Path, k: int, seed: int) -> int:
    """k faces per class (attribute off / on) of the official train partition, drawn with ``default_rng(seed)``,
    written to ``sub`` in CelebA's official layout (links to the JPEGs + the annotation rows). Returns the count."""
    import numpy as np

    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    col = lines[1].split().index(CELEBA_ATTRIBUTE)
    rows = {ln.split()[0]: ln for ln in lines[2:] if ln.strip()}
    part = dict(ln.split()[:2] for ln in (root / "list_eval_partition.txt").read_text().splitlines() if ln.strip())
    train = sorted(f for f in rows if part.get(f) == "0")
    on = np.array([rows[f].split()[1 + col] == "1" for f in train])
    rng = np.random.default_rng(seed)
    pick = sorted(train[i] for c in (False, True) for i in rng.choice(np.flatnonzero(on == c), size=k, replace=False))
    images = sub / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    for f in pick:
        if not (images / f).exists():
            (images / f).symlink_to(root / "img_align_celeba" / f)
    (sub / "list_attr_celeba.txt").write_text("\n".join([str(len(pick)), lines[1], *(rows[f] for f in pick)]) + "\n")
    (sub / "list_eval_partition.txt").write_text("".join(f"{f} 0\n" for f in pick))
    return len(pick)


def job_name(task: str, k: int, seed: int) -> str:
    return TASKS[task]["job"].format(k=k, seed=seed)


def train_gan(work: Path, data_dir: Path, seed: int, steps: int, experiment: str, gan_overrides: list[str],
              keep_best: int = 0) -> Path:
    """Train the cGAN ``experiment`` on the data set in ``data_dir`` (Fashion-MNIST IDX / CelebA layout) with
    ``ganlab.train`` into ``work/gan``; returns ``work/gan/checkpoints/last.ckpt``. With ``keep_best`` = N the
    class_fidelity callback scores the EMA generator every N steps (its label classifier trained on the same
    data) and keeps ``best_class_fidelity.ckpt`` beside it. A run stopped by a signal exits instead of
    returning a half-trained checkpoint."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from ganlab import signals
    from ganlab.train import train

    overrides = [
        f"experiment={experiment}", f"data.root={data_dir}",
        f"data.cache_dir={work / 'cache'}", "data.num_workers=1",
        f"generator_steps={steps}", f"seed={seed}", f"sample_every={max(steps // 4, 1)}",
        f"checkpoint_every={steps}", "trainer.accelerator=cpu",
        *(["callbacks=[model_checkpoint,sample_grid,class_fidelity]", "callbacks.class_fidelity.save_best=true",
           f"callbacks.class_fidelity.every_n_steps={keep_best}"] if keep_best
          else ["callbacks=[model_checkpoint,sample_grid]"]),
        "logger=[]", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        f"paths.root_dir={work}", f"paths.output_dir={work / 'gan'}", f"paths.cache_dir={work / 'cache'}",
        *gan_overrides,
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    train(cfg)
    if signals.requested():  # stopped early (SIGTERM / Ctrl-C): never score a half-trained GAN
        sys.exit(f"{work.name}: GAN training was stopped by a signal before {steps} generator steps; "
                 f"delete {work} to rerun it")
    return work / "gan" / "checkpoints" / "last.ckpt"


def generate_set(ckpt: Path, out: Path, seed: int, request: dict):
    """``ganlab.generate`` of ``request`` (per_class, filter, ...) into ``out``; the images are also saved as
    ``out.npz`` (uint8 ``(N, C, H, W)`` + class indices). Returns ``(x, y, manifest)``."""
    import numpy as np
    from PIL import Image

    from ganlab.generate import generate

    manifest = generate({"ckpt": str(ckpt), "out": str(out), "seed": seed, "progress": False, "overwrite": True,
                         "device": "cpu", **request})
    c, h, w = manifest["image_shape"]
    x = np.stack([np.asarray(Image.open(out / r["file"])).reshape(h, w, c).transpose(2, 0, 1)
                  for r in manifest["images"]]) if manifest["images"] else np.zeros((0, c, h, w), np.uint8)
    y = np.array([r["class_index"] for r in manifest["images"]], dtype=np.int64)
    np.savez_compressed(out.with_suffix(".npz"), x=x, y=y)
    return x, y, manifest


def mix_weights(n_real: int, n_synthetic: int, frac: float):
    """Sampling weights over ``n_real`` real then ``n_synthetic`` synthetic images: a fraction ``frac`` of every
    batch synthetic (uniform within each part)."""
    import numpy as np

    return np.concatenate([np.full(n_real, (1 - frac) / n_real), np.full(n_synthetic, frac / n_synthetic)])


def fit_and_score(x, y, test, class_names, *, steps: int, seed: int, classic: bool, **train_kw):
    """The study's classifier (CompactCNN, batch 128; ``classic``: flips + 2-px translations) trained on
    ``(x, y)`` and scored on ``test = (x_test, y_test)``; returns ``(classifier, accuracy report)``."""
    from ganlab.metrics.classifier import accuracy_report, predict, train_classifier

    clf = train_classifier(x, y, num_classes=len(class_names), steps=steps, batch_size=128, seed=seed,
                           hflip=classic, translate=2 if classic else 0, **train_kw)
    return clf, accuracy_report(predict(clf, test[0]), test[1], "class", class_names)


# -- one job -------------------------------------------------------------------------------------------------
def run_job(args, k: int, seed: int, previous: dict | None = None) -> dict:
    """One (task, k, seed): the GAN, its two synthetic sets and the classifiers of every arm. With ``previous``
    (the job's earlier result), only the arms it lacks are trained, from the job's saved images."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    task = args.task
    work = Path(args.work) / job_name(task, k, seed)
    work.mkdir(parents=True, exist_ok=True)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    times: dict[str, float] = {}
    dm = full_datamodule(data_root(args.data, task), Path(args.work) / "cache", task)
    x_test, y_test = np.asarray(dm.split_images("test")), np.asarray(dm.split_labels("test"))
    sub = work / ("fashion-subset" if task == "fashion-mnist" else "celeba-subset")
    ckpt = work / "gan" / "checkpoints" / "last.ckpt"

    # 1: the k real images per class, in the data set's own layout (what ganlab.train reads)
    if task == "fashion-mnist":
        x_real, y_real = real_subset(dm, k, seed)
        write_fashion_subset(sub, x_real, y_real, x_test, y_test)
    else:
        n = celeba_subset(data_root(args.data, task), sub, k, seed)
        sub_dm = full_datamodule(sub, work / "cache", task)  # the same preprocessing as the GAN's data
        x_real, y_real = np.asarray(sub_dm.split_images("train")), np.asarray(sub_dm.split_labels("train"))
        if len(x_real) != n or np.bincount(y_real, minlength=2).tolist() != [k, k]:
            raise RuntimeError(f"{sub}: expected {k} faces per class, read {np.bincount(y_real).tolist()}")
    np.savez_compressed(work / "real.npz", x=x_real, y=y_real)

    # 2: the cGAN on exactly these images, through the normal training entry point
    if not ckpt.exists():
        t = time.perf_counter()
        train_gan(work, sub, seed, args.gan_steps, args.experiment or TASKS[task]["experiment"],
                  TASKS[task]["gan_overrides"] if args.gan_overrides is None else args.gan_overrides)
        times["gan_train"] = time.perf_counter() - t

    # 3: m synthetic images per class with ganlab.generate, without and with selection (reused when saved)
    synth, selection = {}, {}
    for name, extra in (("plain", {}), ("selected", dict(SELECTION))):
        if previous is not None and (work / f"synthetic_{name}.npz").exists():
            with np.load(work / f"synthetic_{name}.npz") as d:
                synth[name] = (d["x"], d["y"])
            continue
        t = time.perf_counter()
        x, y, manifest = generate_set(ckpt, work / f"synthetic_{name}", seed, {"per_class": args.m, **extra})
        synth[name] = (x, y)
        sel = manifest["selection"]
        selection[name] = {"per_class_acceptance": {c: v["acceptance_rate"] for c, v in sel["per_class"].items()},
                           "selector": sel.get("selector"), "gamma": {c: v.get("gamma_used") for c, v in
                                                                      sel["per_class"].items()}}
        times[f"generate_{name}"] = time.perf_counter() - t

    # 4: the same classifier on every arm (only the missing ones for a finished job)
    result: dict = previous or {
        "task": task, "k": k, "seed": seed, "m": args.m, "gan_steps": args.gan_steps, "clf_steps": args.clf_steps,
        "selection_options": SELECTION, "n_real": int(len(x_real)), "n_test": int(len(x_test)), "accuracy": {},
        "per_class": {}, "selection": selection}
    for arm, (classic, which, frac) in ARMS.items():
        if arm in result["accuracy"]:
            continue
        t = time.perf_counter()
        if which is None:
            x, y, w = x_real, y_real, None
        elif frac >= 1.0:
            (x, y), w = synth[which], None
        else:
            xs, ys = synth[which]
            x, y = np.concatenate([x_real, xs]), np.concatenate([y_real, ys])
            w = mix_weights(len(x_real), len(xs), frac)
        _, rep = fit_and_score(x, y, (x_test, y_test), dm.class_names, steps=args.clf_steps, seed=seed, classic=classic,
                               sample_weights=w)
        result["accuracy"][arm] = rep["accuracy"]
        result["per_class"][arm] = {n: v["accuracy"] for n, v in rep["per_class"].items()}
        times[f"clf_{arm}"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    if previous is None:
        result["seconds"] = {k_: round(v, 1) for k_, v in times.items()}
        result["cpu_seconds"] = round(cpu_seconds() - cpu0, 1)
    else:  # the cost of the added arms, kept apart from the job's original cost
        added = result.setdefault("added_arms", [])
        added.append({"seconds": {k_: round(v, 1) for k_, v in times.items()},
                      "cpu_seconds": round(cpu_seconds() - cpu0, 1)})
        result["cpu_seconds"] = round(result["cpu_seconds"] + added[-1]["cpu_seconds"], 1)
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


def gains_over_stronger_classic(js: list[dict]) -> tuple[str, dict]:
    """For the jobs of one k: the classic arm with the higher mean accuracy, and every other arm's gain over it,
    paired by seed (mean and 95 % interval)."""
    base = max(CLASSIC, key=lambda a: sum(j["accuracy"][a] for j in js))
    return base, {arm: ci95([j["accuracy"][arm] - j["accuracy"][base] for j in js])
                  for arm in ARMS if arm != base and all(arm in j["accuracy"] for j in js)}


def aggregate(args, jobs: list[dict], clf_info: dict | None, scores: dict) -> dict:
    ks = sorted({j["k"] for j in jobs})
    rows = []
    for k in ks:
        js = sorted((j for j in jobs if j["k"] == k), key=lambda j: j["seed"])
        row: dict = {"k": k, "seeds": [j["seed"] for j in js], "accuracy": {}, "gain_vs_" + BASELINE: {},
                     "per_class": {}}
        for arm in ARMS:
            if not all(arm in j["accuracy"] for j in js):  # an arm added later, not yet trained for every seed
                continue
            row["accuracy"][arm] = ci95([j["accuracy"][arm] for j in js])
            row["gain_vs_" + BASELINE][arm] = ci95([j["accuracy"][arm] - j["accuracy"][BASELINE] for j in js])
            names = list(js[0]["per_class"][arm])
            row["per_class"][arm] = {n: float(sum(j["per_class"][arm][n] for j in js) / len(js)) for n in names}
        row["stronger_classic"], row["gain_vs_stronger_classic"] = gains_over_stronger_classic(js)
        for which in ("plain", "selected"):
            sc = [scores[job_name(args.task, k, j["seed"])][which] for j in js if job_name(args.task, k, j["seed"]) in scores]
            if sc:
                row[f"synthetic_{which}"] = {m: ci95([s[m] for s in sc]) for m in sc[0] if not isinstance(sc[0][m], dict)}
                if "label_fidelity_per_class" in sc[0]:
                    row[f"synthetic_{which}"]["label_fidelity_per_class"] = [s["label_fidelity_per_class"] for s in sc]
            acc = [j["selection"][which]["per_class_acceptance"] for j in js]
            row[f"synthetic_{which}"] = {**row.get(f"synthetic_{which}", {}),
                                         "acceptance_mean": float(sum(sum(a.values()) / len(a) for a in acc) / len(acc)),
                                         "acceptance_per_class": {c: float(sum(a[c] for a in acc) / len(acc))
                                                                  for c in acc[0]}}
        rows.append(row)
    cpu = sum(j["cpu_seconds"] for j in jobs) + (clf_info or {}).get("cpu_seconds", 0.0)
    return {"rows": rows, "jobs": jobs, "label_fidelity_classifier": clf_info, "cpu_seconds_total": round(cpu, 1),
            "settings": {"task": args.task, "m": args.m, "gan_steps": args.gan_steps, "clf_steps": args.clf_steps,
                         "selection": SELECTION, "experiment": args.experiment or TASKS[args.task]["experiment"],
                         "gan_overrides": TASKS[args.task]["gan_overrides"] if args.gan_overrides is None
                         else args.gan_overrides, "threads": args.threads}}


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
    t = TASKS[s["task"]]
    lines = [f"{t['title']}; GAN `{s['experiment']}` ({' '.join(s['gan_overrides'])}), {s['gan_steps']} generator "
             f"steps on the k real images per class only; m = {s['m']} synthetic images per class; selected = "
             f"`{' '.join(f'{a}={b}' for a, b in s['selection'].items())}` (rejection sampling with the GAN's own D); "
             f"CompactCNN {s['clf_steps']} steps of batch 128. Accuracy (%) on {t['test']}, mean ± "
             "95 % CI (Student t over seeds).", "",
             "## Test accuracy", "", "| arm | " + " | ".join(f"k = {r['k']} ({len(r['seeds'])} seeds)"
                                                            for r in summary["rows"]) + " |",
             "| --- |" + " ---: |" * len(summary["rows"])]
    cell = lambda r, key, arm, fmt: fmt(r[key][arm]) if arm in r[key] else "not run"  # noqa: E731
    for arm in ARMS:
        lines.append(f"| {arm} | " + " | ".join(cell(r, "accuracy", arm, pct) for r in summary["rows"]) + " |")
    lines += ["", f"## Gain over {BASELINE} (paired by seed, points)", "",
              "| arm | " + " | ".join(f"k = {r['k']}" for r in summary["rows"]) + " |",
              "| --- |" + " ---: |" * len(summary["rows"])]
    for arm in ARMS:
        if arm != BASELINE:
            lines.append(f"| {arm} | " + " | ".join(cell(r, "gain_vs_" + BASELINE, arm, sgn) for r in summary["rows"])
                         + " |")
    if all("stronger_classic" in r for r in summary["rows"]):
        lines += ["", "## Gain over the stronger classic arm (real or real+classic, the higher mean at that k; paired "
                  "by seed, points)", "",
                  "| arm | " + " | ".join(f"k = {r['k']} (vs {r['stronger_classic']})" for r in summary["rows"]) + " |",
                  "| --- |" + " ---: |" * len(summary["rows"])]
        for arm in ARMS:
            if arm not in CLASSIC:
                lines.append(f"| {arm} | " + " | ".join(cell(r, "gain_vs_stronger_classic", arm, sgn)
                                                        for r in summary["rows"]) + " |")
    lines += ["", "## Synthetic sets", "", "label fidelity: accuracy of the full-data label classifier on them; "
              "precision / recall: k = 3 manifolds, up to 5,000 real training images, that classifier's 128-d "
              "features; variety: per-pixel standard deviation across a class's images, synthetic / its k real ones "
              "(mean over classes); kept: mean over classes of the fraction of candidates the selection kept.", "",
              "| k | set | label fidelity | precision | recall | variety | kept |",
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in summary["rows"]:
        for which in ("plain", "selected"):
            d = r.get(f"synthetic_{which}", {})
            f = lambda m: pct(d[m]) if m in d else "not measured"  # noqa: E731
            v = f"{d['variety']['mean']:.2f} ± {d['variety']['ci95']:.2f}" if "variety" in d else "not measured"
            lines.append(f"| {r['k']} | {which} | {f('label_fidelity')} | {f('precision')} | {f('recall')} | {v} | "
                         f"{100 * d.get('acceptance_mean', float('nan')):.1f} % |")
    per_class = [(r, d) for r in summary["rows"] if (d := r.get("synthetic_plain", {}).get("label_fidelity_per_class"))]
    if per_class:
        names = list(per_class[0][1][0])
        lines += ["", "Label fidelity per requested class, plain synthetic sets, one row per seed (%: the share of "
                  "that class's synthetic images the full-data label classifier reads as that class; 0 = all "
                  "drawn as another class):", "", "| k | seed | " + " | ".join(names) + " |",
                  "| ---: | ---: |" + " ---: |" * len(names)]
        for r, seeds in per_class:
            for seed, d in zip(r["seeds"], seeds):
                lines.append(f"| {r['k']} | {seed} | " + " | ".join(f"{100 * d[n]:.1f}" for n in names) + " |")
    lines += ["", "## Per-class test accuracy (%, mean over seeds)", ""]
    for r in summary["rows"]:
        names = list(r["per_class"][BASELINE])
        lines += [f"k = {r['k']}", "", "| arm | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
        for arm in (a for a in ARMS if a in r["per_class"]):
            lines.append(f"| {arm} | " + " | ".join(f"{100 * r['per_class'][arm][n]:.1f}" for n in names) + " |")
        lines.append("")
    (out / "results.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ks = [r["k"] for r in summary["rows"]]
    for arm, marker in zip(ARMS, itertools.cycle("osD^v<>xP*hd")):  # cycle: a new arm is never left off the plot
        rs = [r for r in summary["rows"] if arm in r["accuracy"]]
        ax.errorbar([r["k"] for r in rs], [100 * r["accuracy"][arm]["mean"] for r in rs],
                    yerr=[100 * np.nan_to_num(r["accuracy"][arm]["ci95"]) for r in rs],
                    label=arm, marker=marker, capsize=3)
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("real training images per class (k)")
    ax.set_ylabel("test accuracy (%), mean ± 95% CI")
    ax.set_title(f"{t['title']}, CompactCNN")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_k.png")
    plt.close(fig)
    for r in summary["rows"]:  # what the synthetic images lack, seed 0 (or the first seed)
        job = work / job_name(s["task"], r["k"], r["seeds"][0])
        if not (job / "synthetic_plain.npz").exists():
            continue
        if s["task"] == "fashion-mnist":  # real vs synthetic, 8 per class (Fashion-MNIST: MIT licence)
            real_vs_synthetic_figure(job, r["k"], out / f"fashion_mnist_vs_synthetic_k{r['k']}.png")
        else:  # generated faces only, next to the within-class statistics of real and synthetic sets
            synthetic_faces_figure(job, r, out / f"generated_faces_k{r['k']}.png")


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


def job_real(job: Path):
    """The k real training images per class of a finished job (``real.npz``; older Fashion-MNIST jobs: the IDX files)."""
    import numpy as np

    if (job / "real.npz").exists():
        with np.load(job / "real.npz") as d:
            return d["x"], d["y"]
    from variety import read_idx

    sub = job / "fashion-subset"
    return read_idx(sub / "train-images-idx3-ubyte.gz")[:, None], read_idx(sub / "train-labels-idx1-ubyte.gz")


def class_variety(x, y) -> dict[int, float]:
    """Per class: the mean over pixels of the per-pixel standard deviation across its images (in [-1, 1])."""
    import numpy as np

    return {int(c): float((x[y == c] / 127.5 - 1).std(0).mean()) for c in np.unique(y)}


def synthetic_faces_figure(job: Path, row: dict, path: Path, n: int = 8, lines: int = 2) -> None:
    """Generated faces only (never a real one): per class ``lines`` rows of n plain | n DRS-selected synthetic
    faces, and a bar chart of the within-class variety of the real faces against the synthetic sets."""
    import matplotlib.pyplot as plt
    import numpy as np

    sets = {}
    for which in ("plain", "selected"):
        with np.load(job / f"synthetic_{which}.npz") as d:
            sets[which] = (d["x"], d["y"])
    xr, yr = job_real(job)
    names = list(row["per_class"][BASELINE])
    size = xr.shape[-1]
    white = lambda h, w: np.full((3, h, w), 255, np.uint8)  # noqa: E731
    rows = []
    for c in range(len(names)):
        for i in range(lines):
            parts = []
            for which in ("plain", "selected"):
                x, y = sets[which]
                tiles = list(x[y == c][i * n : (i + 1) * n])
                parts += [*tiles, *[white(size, size)] * (n - len(tiles)), white(size, 6)]
            rows.append(np.concatenate(parts[:-1], axis=2))
        rows.append(white(6, rows[-1].shape[2]))
    grid = np.concatenate(rows[:-1], axis=1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110, gridspec_kw={"width_ratios": [2.2, 1]})
    axes[0].imshow(grid.transpose(1, 2, 0))
    step = lines * size + 6
    axes[0].set_yticks([step * c + lines * size / 2 for c in range(len(names))], names)
    axes[0].set_xticks([n * size / 2, n * size + 6 + n * size / 2], ["plain", "DRS-selected"])
    axes[0].set_title(f"{job.name}: generated faces only (no real face shown)", fontsize=9)
    var = {"real (the k per class)": class_variety(xr, yr), **{f"synthetic {w}": class_variety(*sets[w]) for w in sets}}
    width = 0.8 / len(var)
    for i, (label, v) in enumerate(var.items()):
        axes[1].bar(np.arange(len(names)) + i * width, [v[c] for c in range(len(names))], width, label=label)
    axes[1].set_xticks(np.arange(len(names)) + width, names)
    axes[1].set_ylabel("per-pixel std within class (images in [-1, 1])")
    axes[1].set_title("within-class variety", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def synthetic_variety(job: Path) -> dict:
    """Per synthetic set of a job: its within-class variety relative to the job's real images (mean over classes)."""
    import numpy as np

    real = class_variety(*job_real(job))
    out = {}
    for which in ("plain", "selected"):
        if (job / f"synthetic_{which}.npz").exists():
            with np.load(job / f"synthetic_{which}.npz") as d:
                syn = class_variety(d["x"], d["y"])
            out[which] = {"variety": float(np.mean([syn[c] / real[c] for c in syn]))}
    return out


def score_synthetic(args, names: list[str]) -> tuple[dict | None, dict]:
    """The full-data label classifier: label fidelity and precision / recall of every synthetic set, and its
    within-class variety relative to the job's real images."""
    import numpy as np
    import torch

    from ganlab.metrics.classifier import features, get_label_classifier, predict
    from ganlab.metrics.core import compute_metrics

    torch.set_num_threads(args.threads)
    c0, t0 = cpu_seconds(), time.perf_counter()
    dm = full_datamodule(data_root(args.data, args.task), Path(args.work) / "cache", args.task)
    steps = {"steps": args.fidelity_steps} if args.fidelity_steps else {}
    clf, info = get_label_classifier(dm, cache_dir=str(Path(args.work) / "cache" / "classifier"), **steps)
    info = {"real_test_accuracy": info.get("real_heldout", {}).get("accuracy"),
            "train_seconds": info.get("train_seconds"), "from_cache": info.get("from_cache"),
            "steps": info.get("settings", {}).get("steps")}
    n_train = len(dm.split_images("train"))
    rows = np.random.default_rng(0).choice(n_train, min(5000, n_train), replace=False)
    real_feat = torch.from_numpy(features(clf, np.asarray(dm.split_images("train"))[np.sort(rows)]))
    out = {}
    for name in names:
        job = Path(args.work) / name
        variety = synthetic_variety(job)
        for which in ("plain", "selected"):
            z = job / f"synthetic_{which}.npz"
            if not z.exists():
                continue
            with np.load(z) as d:
                x, y = d["x"], d["y"]
            prc = compute_metrics(real_feat, torch.from_numpy(features(clf, x)), ["prc"], device="cpu")
            pred = predict(clf, x)
            out.setdefault(name, {})[which] = {
                "label_fidelity": float((pred == y).mean()), "precision": float(prc["precision"]),
                "recall": float(prc["recall"]),
                # per requested class: the fraction the classifier reads as that class (0 = drawn as another)
                "label_fidelity_per_class": {dm.class_names[c]: float((pred[y == c] == c).mean())
                                             for c in np.unique(y)},
                **variety[which]}
    info["cpu_seconds"] = round(cpu_seconds() - c0, 1)
    info["seconds"] = round(time.perf_counter() - t0, 1)
    return info, out


def job_done(path: Path) -> bool:
    """A finished job with a result for every arm of :data:`ARMS`."""
    return path.exists() and set(ARMS) <= set(json.loads(path.read_text())["accuracy"])


def run_jobs(args, todo: list[tuple[str, int, int]]) -> None:
    """Run the (task, k, seed) jobs as ``--jobs`` parallel subprocesses; stop if one fails."""
    jobs_dir = Path(args.work) / "jobs"
    todo.sort(key=lambda j: (j[0] == "fashion-mnist", -j[1]))  # biggest jobs first, so parallel runs end together
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    passthrough = ["--m", str(args.m), "--gan-steps", str(args.gan_steps), "--clf-steps", str(args.clf_steps),
                   "--threads", str(args.threads), "--work", args.work,
                   *(["--fidelity-steps", str(args.fidelity_steps)] if args.fidelity_steps else []),
                   *(["--data", args.data] if args.data else []), *(["--fresh"] if args.fresh else []),
                   *(["--experiment", args.experiment] if args.experiment else []),
                   *(["--gan-overrides", *args.gan_overrides] if args.gan_overrides is not None else [])]
    commands = [(job_name(task, k, s), [sys.executable, __file__, "--task", task, "--only", str(k), str(s),
                                        *passthrough]) for task, k, s in todo]
    run_lanes(commands, args.jobs, Path(args.work), env,
              lambda name: json.loads((jobs_dir / f"{name}.json").read_text())["accuracy"])


def run_lanes(commands: list[tuple[str, list[str]]], lanes: int, log_dir: Path, env: dict, report) -> None:
    """Run the ``(name, argv)`` commands as at most ``lanes`` parallel subprocesses, in order, each logging to
    ``log_dir/<name>.log``; ``report(name)`` is printed for each finished one. Exits naming the failed ones."""
    todo, running, failed = list(commands), [], []
    while todo or running:
        while todo and len(running) < lanes:
            name, cmd = todo.pop(0)
            log = open(log_dir / f"{name}.log", "a")
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), name))
            print(f"started {name}", flush=True)
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                if proc.returncode:
                    failed.append(name)
                    print(f"FAILED {name} (see {log_dir}/{name}.log)", flush=True)
                else:
                    print(f"done {name}: {report(name)}", flush=True)
    if failed:
        sys.exit(f"{len(failed)} job(s) failed: {failed}")


def aggregate_task(args, task: str, ks: list[int], c0: float, t0: float) -> None:
    """Score, aggregate and write the tables / plots of one task from its finished jobs."""
    args.task = task
    jobs_dir = Path(args.work) / "jobs"
    names = [job_name(task, k, s) for k in ks for s in args.seeds]
    missing = [n for n in names if not (jobs_dir / f"{n}.json").exists()]
    names = [n for n in names if n not in missing]
    if missing:
        print(f"not run (no job result): {', '.join(missing)}", flush=True)
    if not names:
        return
    if args.no_score:  # no label-fidelity classifier: label fidelity and precision / recall "not measured"
        clf_info, scores = None, {n: synthetic_variety(Path(args.work) / n) for n in names}
    else:
        clf_info, scores = score_synthetic(args, names)
    prepared = Path(args.work) / ("classifier.json" if task == "fashion-mnist" else f"classifier_{task}.json")
    if clf_info is None:
        pass
    elif prepared.exists():  # trained by an earlier call (or a separate process): its cost, not the cache load's
        clf_info = {**clf_info, **{k: v for k, v in json.loads(prepared.read_text()).items() if k != "from_cache"}}
    elif not clf_info.get("from_cache"):
        prepared.write_text(json.dumps(clf_info, indent=1))
    jobs = [json.loads((jobs_dir / f"{n}.json").read_text()) for n in names]
    summary = aggregate(args, jobs, clf_info, scores)
    summary["not_run"] = missing
    summary["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
    summary["host"] = {"cpus": os.cpu_count(), "parallel_jobs": args.jobs, "torch_threads_per_job": args.threads,
                       "machine": " ".join(os.uname()[i] for i in (0, 2, 4))}
    out = Path(args.out) / TASKS[task]["out"]
    write_outputs(summary, out, Path(args.work))
    print((out / "results.md").read_text())
    print(f"{task}: total CPU time of the study: {summary['cpu_seconds_total'] / 60:.1f} min "
          f"(this invocation so far: {(cpu_seconds() - c0) / 60:.1f} min CPU, "
          f"{summary['wall_seconds_this_invocation'] / 60:.1f} min wall)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--ks", type=int, nargs="+", default=TASKS["fashion-mnist"]["ks"], help="Fashion-MNIST k's")
    p.add_argument("--face-ks", type=int, nargs="+", default=TASKS["celeba-smiling"]["ks"],
                   help="CelebA k's (faces per class)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--m", type=int, default=200, help="synthetic images per class")
    p.add_argument("--gan-steps", type=int, default=600)
    p.add_argument("--clf-steps", type=int, default=150)
    p.add_argument("--experiment", default=None, help="the cGAN experiment config (default: the task's)")
    p.add_argument("--fidelity-steps", type=int, default=800,
                   help="steps of the full-data label-fidelity classifier")
    p.add_argument("--gan-overrides", nargs="*", default=None,
                   help="Hydra overrides for the cGAN (default: the task's CPU-sized widths and labels)")
    p.add_argument("--jobs", type=int, default=1, help="jobs run in parallel (subprocesses)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per job (1: on a busy machine 2 OpenMP threads per process were 10-20x slower)")
    p.add_argument("--data", default=None, help="the data folder, with one task only (default: $GANLAB_DATA/fashion-mnist or celeba-subset)")
    p.add_argument("--work", default="/tmp/ganlab-augmentation")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--fresh", action="store_true", help="rerun jobs that already have results")
    p.add_argument("--no-aggregate", action="store_true", help="only run the jobs (aggregate in a later call)")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run no job: aggregate the finished ones of the grid (missing ones are listed)")
    p.add_argument("--no-score", action="store_true",
                   help="aggregate without the label-fidelity classifier (label fidelity, precision / recall not measured)")
    p.add_argument("--task", default="fashion-mnist", choices=list(TASKS), help=argparse.SUPPRESS)
    p.add_argument("--only", type=int, nargs=2, metavar=("K", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    jobs_dir = Path(args.work) / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)

    if args.only:  # one job (a subprocess of run_jobs)
        k, seed = args.only
        path = jobs_dir / f"{job_name(args.task, k, seed)}.json"
        previous = json.loads(path.read_text()) if path.exists() and not args.fresh else None
        res = run_job(args, k, seed, previous)
        path.write_text(json.dumps(res, indent=1))
        print(json.dumps({x: res.get(x) for x in ("task", "k", "seed", "accuracy", "seconds", "cpu_seconds")}), flush=True)
        return

    t0, c0 = time.perf_counter(), cpu_seconds()
    grid = {t: (args.ks if t == "fashion-mnist" else args.face_ks) for t in args.tasks}
    todo = [(t, k, s) for t, ks in grid.items() for k in ks for s in args.seeds
            if not args.aggregate_only and (args.fresh or not job_done(jobs_dir / f"{job_name(t, k, s)}.json"))]
    run_jobs(args, todo)
    if not args.no_aggregate:
        for task, ks in grid.items():
            aggregate_task(args, task, ks, c0, t0)


if __name__ == "__main__":
    main()
