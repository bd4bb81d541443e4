"""Why does one conditional recipe collapse each class to one shape? Controlled runs on all of
Fashion-MNIST (or, ``--task celeba-smiling``, on the 4,560 train faces of the shared CelebA subset at
32 px, the attribute Smiling as two classes): train ``experiment`` at the CPU width with extra
overrides (one change at a time), then score the raw and the EMA generator per class:

* label fidelity: the share of the images generated for class c that the label classifier (the
  compact CNN of :mod:`ganlab.metrics.classifier`, trained on the 60,000 real training images)
  reads as c;
* variety: the mean per-pixel standard deviation across the class's generated images divided by
  the same across the class's real training images (1 = as varied as the real class).

    python experiments/conditional/diagnose.py --steps 1000 strong experiment=cgan_fashion_strong
    python experiments/conditional/diagnose.py --steps 1000 strong_bn experiment=cgan_fashion_strong \
        model/augment=none

Each variant writes ``<work>/<name>/diagnosis.json``; ``--table`` prints every finished variant.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "augmentation"))
from run import data_root, full_datamodule  # noqa: E402  (the tasks' data, as the synthetic-data study reads them)

CPU_WIDTH = ["model.generator.base_width=32", "model.discriminator.base_width=32", "model.generator.z_dim=64"]
# what makes a task's runs CPU-sized beyond the widths (the experiment itself picks the data and labels)
TASK_OVERRIDES = {"fashion-mnist": [], "celeba-smiling": ["data.resolution=32"]}


def train(run_dir: Path, steps: int, overrides: list[str], seed: int, every: int, keep_best: int = 0,
          classifier: tuple[Path, int] | None = None, task: str = "fashion-mnist", width: str = "cpu") -> float:
    """``ganlab.train`` with only the checkpoint callback (a checkpoint every ``every`` steps), plus,
    with ``keep_best`` = N, the class_fidelity callback every N steps keeping best_class_fidelity.ckpt
    (its classifier: ``classifier`` = (cache folder, training steps), the one scoring uses);
    ``width``: "cpu" (CPU_WIDTH) or "experiment" (the experiment's own widths); returns the CPU seconds it took."""
    callbacks = ["callbacks=model_checkpoint"]
    if keep_best:
        cache, clf_steps = classifier
        callbacks = ["callbacks=[model_checkpoint,class_fidelity]", "callbacks.class_fidelity.save_best=true",
                     f"callbacks.class_fidelity.every_n_steps={keep_best}", f"callbacks.class_fidelity.cache_dir={cache}",
                     f"callbacks.class_fidelity.classifier_steps={clf_steps}"]
    widths = CPU_WIDTH if width == "cpu" else []
    cmd = [sys.executable, "-m", "ganlab.train", *widths, *TASK_OVERRIDES[task], f"generator_steps={steps}", f"seed={seed}",
           "trainer.accelerator=cpu", *callbacks, "logger=csv", f"checkpoint_every={every}",
           f"hydra.run.dir={run_dir}", "data.num_workers=0", *overrides]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def scoring_setup(work: Path, classifier_steps: int, task: str = "fashion-mnist", **classifier: Any):
    """The label classifier (cached), its report, the real training images and labels, the class names.
    ``classifier``: other settings of :func:`ganlab.metrics.classifier.train_classifier` (seed, widths)."""
    from ganlab.metrics.classifier import get_label_classifier

    dm, real_x, real_y, names = real_data(work, task)
    clf, info = get_label_classifier(dm, cache_dir=str(work / "cache" / "classifier"),
                                     steps=classifier_steps, **classifier)
    return clf, info, real_x, real_y, names


def real_data(work: Path, task: str):
    """The task's data module, its real training images and labels, and the class names."""
    dm = full_datamodule(data_root(None, task), work / "cache", task)
    return dm, np.asarray(dm.split_images("train")), np.asarray(dm.split_labels("train")), list(dm.class_names)


class NearestNeighbours:
    """A k-nearest-neighbour vote in pixel space (L2 on images in [-1, 1]) over the real training images: a judge of
    another family than the compact CNNs (nothing learnt, so no features a generator could have been fitted to).
    Called like a network (``predict`` / ``per_class_fidelity``): one row of vote counts per image, the nearest
    neighbour's class breaking ties. Hand-written: torch has no kNN classifier and this is 15 lines."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, k: int, num_classes: int) -> None:
        import torch

        self.bank = torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0).flatten(1)
        self.bank_sq = (self.bank ** 2).sum(1)
        self.labels, self.k, self.num_classes = torch.from_numpy(np.asarray(labels)).long(), int(k), int(num_classes)

    def parameters(self):  # where predict() reads the device from
        return iter([self.bank])

    def eval(self):
        return self

    def __call__(self, x):
        import torch
        import torch.nn.functional as F

        d = self.bank_sq[None] - 2.0 * x.flatten(1).float() @ self.bank.T  # + |x|^2, the same for every neighbour
        idx = d.topk(self.k, dim=1, largest=False).indices  # sorted: column 0 is the nearest
        votes = F.one_hot(self.labels[idx], self.num_classes).sum(1).float()
        votes[torch.arange(len(idx)), self.labels[idx[:, 0]]] += 0.5
        return votes


def knn_setup(work: Path, k: int, task: str = "fashion-mnist"):
    """``scoring_setup`` for the k-NN judge: its per-class accuracy on the real test images is computed once and
    kept in ``<work>/cache/knn<k>-<task>.json``."""
    from ganlab.metrics.classifier import accuracy_report, heldout_split, predict

    dm, real_x, real_y, names = real_data(work, task)
    clf = NearestNeighbours(real_x, real_y, k, len(names))
    cached = work / "cache" / f"knn{k}-{task}.json"
    if not cached.is_file():
        held = heldout_split(dm)
        report = accuracy_report(predict(clf, dm.split_images(held), batch_size=256), dm.split_labels(held), "class", names)
        cached.write_text(json.dumps({"real_heldout": {"split": held, **report}}, indent=1) + "\n")
    return clf, json.loads(cached.read_text()), real_x, real_y, names


def mlp_setup(work: Path, task: str = "fashion-mnist", steps: int = 3000, seed: int = 7):
    """``scoring_setup`` for the MLP judge: a fully connected network on the pixels (784-512-256-K, no convolution),
    trained by :func:`ganlab.metrics.classifier.train_classifier` on the real training images; the network and its
    per-class accuracy on the real test images are kept in ``<work>/cache/mlp-<task>-<steps>-<seed>.pt``."""
    import torch
    from torch import nn

    from ganlab.metrics.classifier import accuracy_report, heldout_split, predict, train_classifier

    dm, real_x, real_y, names = real_data(work, task)
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(real_x.shape[1:])), 512), nn.ReLU(), nn.Dropout(0.2),
                        nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, len(names)))
    cached = work / "cache" / f"mlp-{task}-{steps}-{seed}.pt"
    if cached.is_file():
        blob = torch.load(cached, weights_only=True)
        mlp.load_state_dict(blob["state_dict"])
        return mlp.eval(), json.loads(blob["info_json"]), real_x, real_y, names
    mlp = train_classifier(real_x, real_y, num_classes=len(names), steps=steps, seed=seed, model=mlp)
    held = heldout_split(dm)
    info = {"real_heldout": {"split": held, **accuracy_report(predict(mlp, dm.split_images(held)), dm.split_labels(held),
                                                               "class", names)}}
    torch.save({"state_dict": mlp.state_dict(), "info_json": json.dumps(info)}, cached)
    return mlp, info, real_x, real_y, names


def score(run_dir: Path, work: Path, per_class: int, classifier_steps: int, every: int, steps: int,
          task: str = "fashion-mnist") -> dict:
    import ganlab

    clf, info, real_x, real_y, names = scoring_setup(work, classifier_steps, task)
    labels = np.repeat(np.arange(len(names)), per_class)
    out = {"classifier_real_test": info.get("real_heldout", {}).get("per_class"), "classifier_steps": classifier_steps}
    def raw_and_ema(ckpt: Path) -> dict:
        return {"ema" if ema else "raw": score_generator(ganlab.load(ckpt, ema=ema, device="cpu"), clf, labels,
                                                        names, real_x, real_y) for ema in (False, True)}

    out.update(raw_and_ema(run_dir / "checkpoints" / "last.ckpt"))
    save_grid(ganlab.load(run_dir / "checkpoints" / "last.ckpt", device="cpu"), len(names), run_dir / "samples_last_ema.png")
    best = run_dir / "checkpoints" / "best_class_fidelity.ckpt"
    if best.is_file():  # --keep-best: the checkpoint the class_fidelity callback kept (50 images per class, seed 0)
        chosen = json.loads((run_dir / "class_fidelity.json").read_text())["best"]
        out["best"] = {"generator_step": chosen["generator_step"], "in_training_worst_gap": chosen["worst_gap"],
                       **raw_and_ema(best)}
        save_grid(ganlab.load(best, device="cpu"), len(names), run_dir / "samples_best_ema.png")
    if every < steps:  # the earlier checkpoints too: does fidelity grow with training, or swing?
        out["by_step"] = {int(ckpt.stem.split("_")[1]): raw_and_ema(ckpt)
                          for ckpt in sorted((run_dir / "checkpoints").glob("gstep_*.ckpt"))}
    return out


def recheck(run_dir: Path, work: Path, per_class: int, classifier_steps: int, noise_seed: int,
            task: str = "fashion-mnist", **classifier: Any) -> dict:
    """The EMA generator of the kept checkpoint (best_class_fidelity.ckpt, else last.ckpt) scored again on
    noise it was not selected on (``noise_seed``, ``per_class`` images per class), optionally by a classifier
    of another seed / widths (``classifier``) than the one that chose the checkpoint."""
    import ganlab

    knn, mlp = classifier.pop("knn", None), classifier.pop("mlp", None)
    if knn:
        (clf, info, real_x, real_y, names), classifier = knn_setup(work, knn, task), {"knn": knn}
    elif mlp:
        (clf, info, real_x, real_y, names), classifier = mlp_setup(work, task, classifier_steps), {"mlp": True}
    else:
        clf, info, real_x, real_y, names = scoring_setup(work, classifier_steps, task, **classifier)
    classifier_steps = 0 if knn else classifier_steps
    ckpt = run_dir / "checkpoints" / "best_class_fidelity.ckpt"
    ckpt = ckpt if ckpt.is_file() else run_dir / "checkpoints" / "last.ckpt"
    gan = ganlab.load(ckpt, device="cpu")
    labels = np.repeat(np.arange(len(names)), per_class)
    return {"checkpoint": ckpt.name, "generator_step": int(gan.model.generator_step), "noise_seed": noise_seed,
            "per_class": per_class, "classifier_steps": classifier_steps,
            **{f"classifier_{k}": v for k, v in classifier.items()},
            "classifier_real_test": info.get("real_heldout", {}).get("per_class"),
            "ema": score_generator(gan, clf, labels, names, real_x, real_y, noise_seed)}


def save_grid(gan, num_classes: int, path: Path, per_row: int = 12) -> None:
    """One row per class, ``per_row`` EMA samples each (noise seed 1: not the scored images)."""
    gan.grid(num_classes * per_row, seed=1, labels=np.repeat(np.arange(num_classes), per_row).tolist(),
             nrow=per_row).save(path)


def score_generator(gan, clf, labels, names, real_x, real_y, noise_seed: int = 0) -> dict:
    """Per-class fidelity and (shape) variety of ``per_class`` images per class from ``gan``."""
    from ganlab.metrics.classifier import per_class_fidelity, within_class_variety

    x = gan.sample(len(labels), seed=noise_seed, labels=labels.tolist()).numpy()
    fid = per_class_fidelity(clf, x, labels, names)
    var = within_class_variety(x, labels, real_x, real_y, names)
    shape = within_class_variety(x, labels, real_x, real_y, names, standardize=True)
    return {"fidelity": fid, "variety": var, "shape_variety": shape,
            "mean_shape_variety": float(np.mean(list(shape.values()))),
            "mean_fidelity": float(np.mean(list(fid.values()))),
            "mean_variety": float(np.mean(list(var.values())))}


def worst_gap(fidelity: dict, real: dict | None) -> tuple[float, str]:
    """Issue 20's target in points: :func:`ganlab.metrics.classifier.worst_fidelity_gap` against the
    classifier's per-class accuracy on real test images (>= -5 everywhere meets it)."""
    from ganlab.metrics.classifier import worst_fidelity_gap

    found = worst_fidelity_gap(fidelity, {c: r["accuracy"] for c, r in (real or {}).items()})
    return (float("nan"), "-") if found is None else (100 * found[0], found[1])


def table(work: Path) -> None:
    rows = sorted(work.glob("*/diagnosis.json"), key=lambda p: (json.loads(p.read_text())["steps"], p.parent.name))
    print("| variant | steps | seed | overrides | G | fidelity min / mean (%) | variety min / mean "
          "| shape variety min / mean | worst class | fidelity - real accuracy, worst (points) |")
    print("| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | --- | --- |")
    for p in rows:
        d = json.loads(p.read_text())
        points = [(d["steps"], {g: d[g] for g in ("raw", "ema")})]
        # earlier checkpoints (--checkpoint-every): {"raw": ..., "ema": ...}, or the EMA scores alone (older files)
        points += [(int(s), v if "ema" in v else {"ema": v}) for s, v in d.get("by_step", {}).items() if int(s) != d["steps"]]
        points = sorted(points)
        if "best" in d:  # the checkpoint kept by best in-training worst gap, scored again on 200 per class
            points.append((f"best: {d['best']['generator_step']}", {g: d["best"][g] for g in ("raw", "ema")}))
        for r in d.get("rechecks", []):  # the kept checkpoint on other noise, maybe by another classifier
            points.append((f"recheck {r['generator_step']}: noise {r['noise_seed']}, {r['per_class']}/class, "
                           f"classifier {judge_key(r)}", {"ema": {**r["ema"], "real": r["classifier_real_test"]}}))
        for steps, scores in points:
            for g, r in scores.items():
                worst = min(r["fidelity"], key=r["fidelity"].get)
                gap, gap_class = worst_gap(r["fidelity"], r.get("real") or d.get("classifier_real_test"))
                print(f"| {p.parent.name} | {steps} | {d.get('seed', 0)} | {' '.join(d['overrides'])} | {g} | "
                      f"{100 * min(r['fidelity'].values()):.0f} / {100 * r['mean_fidelity']:.0f} | "
                      f"{min(r['variety'].values()):.2f} / {r['mean_variety']:.2f} | "
                      f"{min(r['shape_variety'].values()):.2f} / {r['mean_shape_variety']:.2f} | {worst} | "
                      f"{gap:+.0f} ({gap_class}) |")


def judge_key(r: dict) -> str:
    """A recheck's classifier in words: steps, and seed / widths when not the selection classifier's; or k-NN."""
    if r.get("classifier_knn"):
        return f"{r['classifier_knn']}-NN on pixels"
    if r.get("classifier_mlp"):
        return f"MLP on pixels, {r['classifier_steps']} steps"
    return f"{r['classifier_steps']} steps" + "".join(
        f", {k.split('_', 1)[1]} {' '.join(map(str, r[k])) if isinstance(r[k], list) else r[k]}"
        for k in ("classifier_seed", "classifier_widths") if k in r)


def judge_table(work: Path, prefix: str = "") -> None:
    """One row per variant (name starting with ``prefix``): the kept checkpoint's worst gap (points) as every
    recheck classifier reads it, and how many of them it meets (>= -5)."""
    rows = [json.loads(p.read_text()) for p in sorted(work.glob(f"{prefix}*/diagnosis.json"))]
    rows = [d for d in rows if d.get("rechecks")]
    judges = sorted({judge_key(r) for d in rows for r in d["rechecks"]}, key=lambda k: (k.count(","), k))
    print("| variant | seed | kept step | shape variety min / mean | " + " | ".join(judges) + " | judges met |")
    print("| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in judges) + " | ---: |")
    for d in rows:
        by = {judge_key(r): r for r in d["rechecks"]}
        gaps = {k: worst_gap(r["ema"]["fidelity"], r["classifier_real_test"]) for k, r in by.items()}
        r0 = next(iter(by.values()))
        cells = [f"{gaps[k][0]:+.0f} ({gaps[k][1]})" if k in gaps else "-" for k in judges]
        met = sum(g >= -5 for g, _ in gaps.values())
        print(f"| {d['name']} | {d.get('seed', 0)} | {r0['generator_step']} | "
              f"{min(r0['ema']['shape_variety'].values()):.2f} / {r0['ema']['mean_shape_variety']:.2f} | "
              + " | ".join(cells) + f" | {met} of {len(gaps)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", choices=sorted(TASK_OVERRIDES), default="fashion-mnist",
                   help="all of Fashion-MNIST, or the CelebA subset's train faces at 32 px with Smiling as 2 classes "
                        "(give the experiment too, e.g. experiment=cgan_celeba_faithful)")
    p.add_argument("--width", choices=["cpu", "experiment"], default="cpu",
                   help="train at the CPU width (base widths 32, z 64) or at the experiment's own widths")
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="also score the raw and EMA generators of a checkpoint every N steps (the last 3 are kept; default: the last only)")
    p.add_argument("--work", type=Path, default=Path("/tmp/ganlab-conditional"))
    p.add_argument("--classifier-steps", type=int, default=800,
                   help="training steps of the label classifier (800: the table in README.md)")
    p.add_argument("--keep-best", type=int, default=0, metavar="N",
                   help="train with the class_fidelity callback every N steps keeping best_class_fidelity.ckpt "
                        "(best in-training worst gap) and score that checkpoint too")
    p.add_argument("--table", action="store_true")
    p.add_argument("--judge-table", metavar="PREFIX", nargs="?", const="", default=None,
                   help="one row per variant (name starting with PREFIX): the kept checkpoint's worst gap by every "
                        "recheck classifier")
    p.add_argument("--score-only", action="store_true")
    p.add_argument("--grids-only", action="store_true", help="only write the sample grids of a trained variant")
    p.add_argument("--recheck", type=int, default=None, metavar="NOISE_SEED",
                   help="score the kept checkpoint's EMA generator again on other noise (--per-class images per "
                        "class), into diagnosis.json's 'recheck'")
    p.add_argument("--classifier-seed", type=int, default=None,
                   help="with --recheck: a label classifier trained with this seed (default: the selection classifier's 0)")
    p.add_argument("--classifier-widths", type=int, nargs=3, default=None, metavar="W",
                   help="with --recheck: a label classifier of these three conv widths (default 16 32 64)")
    p.add_argument("--classifier-knn", type=int, default=None, metavar="K",
                   help="with --recheck: a K-nearest-neighbour vote in pixel space over the real training images "
                        "instead of a network")
    p.add_argument("--classifier-mlp", action="store_true",
                   help="with --recheck: a fully connected network on the pixels (784-512-256-K, seed 7, "
                        "--classifier-steps steps) instead of the compact CNN")
    args = p.parse_args()
    if args.table:
        return table(args.work)
    if args.judge_table is not None:
        return judge_table(args.work, args.judge_table)
    run_dir = args.work / args.name
    if args.grids_only:
        import ganlab

        for ckpt in ("last", "best_class_fidelity"):
            if (run_dir / "checkpoints" / f"{ckpt}.ckpt").is_file():
                gan = ganlab.load(run_dir / "checkpoints" / f"{ckpt}.ckpt", device="cpu")
                save_grid(gan, gan.num_classes, run_dir / f"samples_{ckpt.split('_')[0]}_ema.png")
        return
    every = args.checkpoint_every or args.steps
    record = run_dir / "diagnosis.json"
    if args.recheck is not None:
        result = json.loads(record.read_text())
        other = {k: v for k, v in (("seed", args.classifier_seed), ("widths", args.classifier_widths),
                                   ("knn", args.classifier_knn), ("mlp", args.classifier_mlp or None)) if v is not None}
        again = recheck(run_dir, args.work, args.per_class, args.classifier_steps, args.recheck, args.task, **other)
        fields = ("noise_seed", "per_class", "classifier_steps", "classifier_seed", "classifier_widths", "classifier_knn",
                  "classifier_mlp")
        result["rechecks"] = [r for r in result.get("rechecks", [])
                              if [r.get(f) for f in fields] != [again.get(f) for f in fields]] + [again]
        record.write_text(json.dumps(result, indent=1) + "\n")
        return
    if args.score_only:  # rescore a trained variant: keep what trained it
        result = {k: v for k, v in json.loads(record.read_text()).items() if k in ("name", "width", "steps", "seed",
                                                                                    "overrides", "train_cpu_s", "task")}
    else:
        cpu = train(run_dir, args.steps, args.overrides, args.seed, every, args.keep_best,
                    (args.work / "cache" / "classifier", args.classifier_steps), args.task, args.width)
        result = {"name": args.name, "task": args.task, "width": args.width, "steps": args.steps, "seed": args.seed,
                  "overrides": args.overrides, "keep_best": args.keep_best, "train_cpu_s": round(cpu, 1)}
    t0 = time.process_time()
    result.update(score(run_dir, args.work, args.per_class, args.classifier_steps, every, args.steps, args.task))
    result["score_cpu_s"] = round(time.process_time() - t0, 1)
    record.write_text(json.dumps(result, indent=1) + "\n")
    for g in ("raw", "ema"):
        print(g, {k: f"{100 * v:.0f}%/{result[g]['shape_variety'][k]:.2f}" for k, v in result[g]["fidelity"].items()})


if __name__ == "__main__":
    main()
