"""Synthetic data in the two settings where the literature reports gains (issue 20): few labels, imbalanced classes.

Fashion-MNIST, one command per setting; jobs are (setting, k, seed), each a subprocess of one thread:

* ``few-labels``: labels on k images per class, the rest of the 60,000 unlabelled. The classifier
  trained on the k labelled images (+ classic augmentation) is the ``real+classic`` arm and the
  pseudo-labeller: every unlabelled image it reads with softmax confidence >= ``--pseudo-threshold``
  keeps its pseudo-label. The conditional GAN learns from the labelled + pseudo-labelled images.
  Arms: ``real+classic`` (k labelled), ``pseudo`` (k labelled + the confident pool), ``real+synthetic``
  and ``pseudo+synthetic`` (the same + m synthetic images per class that the pseudo-labeller reads as
  their class with probability >= ``--filter-threshold``, a fraction ``--mix`` of every batch).
* ``imbalanced``: 3 classes (drawn with ``default_rng(seed)``, recorded) cut to k training images, the
  other 7 complete; the conditional GAN learns from that whole set. Arms: ``oversample+classic``
  (minority images drawn as often as a complete class's), ``class-balanced`` (cross-entropy weighted by
  the inverse effective number of samples, Cui et al. 2019), ``synthetic`` (each minority class filled
  up to ``--target`` images with synthetic images that the ``oversample+classic`` classifier reads as
  their class with probability >= ``--filter-threshold``, then sampled class-balanced like
  ``oversample+classic``), ``synthetic+class-balanced`` (the filled set with Cui's loss weights), and with
  ``--fill-shares S ...`` one ``synthetic@S`` per S (the filled set, the synthetic images at share S of their
  class's draws). ``--gan-keep-best N`` samples from the GAN's best class-fidelity checkpoint.

Every arm: the same classifier (CompactCNN, ``--clf-steps`` of batch 128, classic augmentation = flips +
2-px translations, same seed), scored on the 10,000 real test images: accuracy, balanced accuracy, and
(imbalanced) the mean recall of the minority classes. The baseline per metric is the better classic arm
(``few-labels``: ``real+classic`` / ``pseudo``; ``imbalanced``: ``oversample+classic`` / ``class-balanced``);
gains are paired by seed, mean and 95 % Student-t interval. The GAN's per-class label fidelity (plain
samples read by the filtering classifier) and the filter's per-class outcome are recorded per job.

    python experiments/augmentation/settings.py few-labels --jobs 2
    python experiments/augmentation/settings.py imbalanced --ks 20 --seeds 0 --gan-steps 200   # a smoke
    python experiments/augmentation/settings.py imbalanced --aggregate-only                    # tables only

Finished jobs (``<work>/<setting>/jobs/<job>.json`` with every arm) are skipped; a job whose GAN
checkpoint exists reuses it. Tables, figures and ``results.json`` under ``results/<setting>/`` are
written from the job files alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import (
    GAN_OVERRIDES,
    ci95,
    cpu_seconds,
    data_root,
    fit_and_score,
    full_datamodule,
    generate_set,
    labelled_indices,
    mix_weights,
    run_lanes,
    train_gan,
    write_fashion_subset,
)

SETTINGS = {
    "few-labels": {"ks": [10, 50], "arms": ["real+classic", "pseudo", "real+synthetic", "pseudo+synthetic"],
                   "classic": ["real+classic", "pseudo"], "metrics": ["accuracy", "balanced_accuracy"],
                   "options": ["pseudo_threshold", "mix"]},
    "imbalanced": {"ks": [20, 100], "arms": ["oversample+classic", "class-balanced", "synthetic",
                                             "synthetic+class-balanced"],
                   "classic": ["oversample+classic", "class-balanced"],
                   "metrics": ["accuracy", "balanced_accuracy", "minority_recall"],
                   "options": ["minority", "target", "gan_oversample", "beta", "fill_shares"]},
}
METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
                "minority_recall": "mean minority-class recall"}


def arms_of(setting: str, opts: dict) -> list[str]:
    """The setting's arms, plus imbalanced's ``synthetic@S`` for every ``--fill-shares`` S."""
    return SETTINGS[setting]["arms"] + [f"synthetic@{s:g}" for s in opts.get("fill_shares") or []]


# -- the splits and weights ------------------------------------------------------------------------------
def pseudo_labels(probs, threshold: float):
    """Rows of the softmax ``probs`` whose top probability is >= ``threshold``: ``(their indices, their argmax)``."""
    import numpy as np

    probs = np.asarray(probs)
    keep = np.flatnonzero(probs.max(1) >= threshold)
    return keep, probs[keep].argmax(1)


def imbalanced_split(y, k: int, seed: int, n_minority: int = 3):
    """``(sorted kept indices, minority classes)``: ``n_minority`` classes drawn with ``default_rng(seed)`` cut to
    k images each (drawn with the same generator, without replacement); every other class kept whole."""
    import numpy as np

    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    minority = np.sort(rng.choice(classes, n_minority, replace=False))
    keep = [rng.choice(np.flatnonzero(y == c), k, replace=False) if c in minority else np.flatnonzero(y == c)
            for c in classes]
    return np.sort(np.concatenate(keep)), [int(c) for c in minority]


def gan_oversampled(x, y, minority, count: int):
    """The GAN's training set: ``(x, y)``, each minority class's images repeated (cyclically) to ``count`` images
    when ``count`` exceeds its size (0: as it is)."""
    import numpy as np

    rows = np.arange(len(y))
    extra = [np.resize(np.flatnonzero(y == c), count - int((y == c).sum())) for c in minority
             if count > (y == c).sum()]
    rows = np.concatenate([rows, *extra]) if extra else rows
    return x[rows], y[rows]


def class_balanced_weights(counts, beta: float):
    """Cui et al. 2019: class c weighted by ``(1 - beta) / (1 - beta ** n_c)`` (the inverse effective number of
    its ``n_c`` samples), normalised so the weights sum to the number of classes."""
    import numpy as np

    n = np.asarray(counts, dtype=np.float64)
    w = (1.0 - beta) / (1.0 - np.power(beta, n))
    return w * len(n) / w.sum()


def share_weights(y, synthetic, share: float):
    """Class-balanced sampling weights over a filled set (``synthetic``: a boolean mask), every class drawn
    equally often; within a class holding both kinds, synthetic images get ``share`` of its draws and the
    real ones the rest (uniform within each kind)."""
    import numpy as np

    y, synthetic = np.asarray(y), np.asarray(synthetic, dtype=bool)
    w = np.zeros(len(y))
    for c in np.unique(y):
        real, syn = (y == c) & ~synthetic, (y == c) & synthetic
        s = share if real.any() and syn.any() else float(syn.any())
        w[real], w[syn] = (1 - s) / max(real.sum(), 1), s / max(syn.sum(), 1)
    return w


def recall_metrics(rep: dict, class_names, minority=()) -> dict:
    """Accuracy, balanced accuracy (mean per-class recall) and, given minority classes, their mean recall."""
    recall = {n: v["accuracy"] for n, v in rep["per_class"].items()}
    out = {"accuracy": rep["accuracy"], "balanced_accuracy": sum(recall.values()) / len(recall), "per_class": recall}
    if minority:
        out["minority_recall"] = sum(recall[class_names[c]] for c in minority) / len(minority)
    return out


def one_hot(y, k: int):
    import numpy as np

    return np.eye(k, dtype=np.float32)[y]


# -- one job -------------------------------------------------------------------------------------------------
class Job:
    """What every setting's job shares: the full data set, its work folder, the GAN, the filter, the arms."""

    def __init__(self, args, setting: str, k: int, seed: int) -> None:
        import numpy as np

        self.args, self.setting, self.k, self.seed = args, setting, k, seed
        self.dir = Path(args.work) / setting / job_name(setting, k, seed)
        self.dir.mkdir(parents=True, exist_ok=True)
        dm = full_datamodule(data_root(args.data), Path(args.work) / "cache")
        self.names = list(dm.class_names)
        self.x, self.y = np.asarray(dm.split_images("train")), np.asarray(dm.split_labels("train"))
        self.test = (np.asarray(dm.split_images("test")), np.asarray(dm.split_labels("test")))
        self.result: dict = {"setting": setting, "k": k, "seed": seed, "options": options(args), "arms": {},
                             "seconds": {}}

    def arm(self, name: str, x, y, minority=(), **train_kw):
        """Train and score one arm (classic augmentation always on); returns its classifier."""
        t = time.perf_counter()
        clf, rep = fit_and_score(x, y, self.test, self.names, steps=self.args.clf_steps, seed=self.seed, classic=True,
                                 **train_kw)
        self.result["arms"][name] = {**recall_metrics(rep, self.names, minority), "n_train": len(x)}
        self.result["seconds"][f"clf {name}"] = round(time.perf_counter() - t, 1)
        return clf

    def gan(self, x, y):
        """The conditional GAN trained on ``(x, y)`` written as Fashion-MNIST IDX files (reused when trained)."""
        import numpy as np

        import hashlib
        import shutil

        ckpt, stamp = self.dir / "gan" / "checkpoints" / "last.ckpt", self.dir / "gan_data.sha256"
        a = self.args
        h = hashlib.sha256(json.dumps([a.gan, a.gan_override, a.gan_steps] + ([a.gan_keep_best] if a.gan_keep_best
                                                                               else [])).encode())
        h.update(np.ascontiguousarray(x).tobytes())
        h.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
        if ckpt.exists() and (not stamp.exists() or stamp.read_text() != h.hexdigest()):
            shutil.rmtree(self.dir / "gan")  # trained on other images or options: never reused
        if not ckpt.exists():
            t = time.perf_counter()
            stamp.unlink(missing_ok=True)
            # with --gan-keep-best the class_fidelity callback reads its label classifier's per-class accuracy (the
            # reference of worst_gap, a constant per class) on the GAN data's test split: all real test images
            write_fashion_subset(self.dir / "fashion-subset", x, y, *self.test, n_test=None if a.gan_keep_best else 10)
            train_gan(self.dir, self.dir / "fashion-subset", self.seed, a.gan_steps, a.gan, a.gan_override,
                      keep_best=a.gan_keep_best)
            stamp.write_text(h.hexdigest())
            self.result["seconds"]["gan_train"] = round(time.perf_counter() - t, 1)
        self.result["gan_images"] = {"n": len(y), "per_class": np.bincount(y, minlength=len(self.names)).tolist()}
        best = ckpt.with_name("best_class_fidelity.ckpt")
        if a.gan_keep_best and best.exists():  # the checkpoint the class_fidelity callback kept (its record)
            kept = json.loads((self.dir / "gan" / "class_fidelity.json").read_text())["best"]
            self.result["gan_checkpoint"] = {"file": best.name, "generator_step": kept["generator_step"],
                                             "worst_gap": kept["worst_gap"]}
            return best
        self.result["gan_checkpoint"] = {"file": ckpt.name}
        return ckpt

    def synthetic(self, ckpt, clf, per_class):
        """Plain samples (m per class: the GAN's per-class label fidelity as ``clf`` reads it), then ``per_class``
        images selected by ``clf`` (``filter=classifier``, ``partial=true``). Returns the selected ``(x, y)``."""
        from ganlab.metrics.classifier import DEFAULTS, per_class_fidelity, save_classifier
        from ganlab.selection import SelectionError

        t = time.perf_counter()
        path = self.dir / "filter_classifier.pt"
        save_classifier(clf, path, {"widths": list(DEFAULTS["widths"]), "class_names": self.names,
                                    "trained_on": f"{self.setting} k={self.k} seed={self.seed}"})
        x, y, _ = generate_set(ckpt, self.dir / "synthetic_plain", self.seed, {"per_class": self.args.m})
        self.result["gan_label_fidelity"] = per_class_fidelity(clf, x, y, self.names)
        request = {"per_class": per_class, "filter": "classifier", "filter_classifier": str(path),
                   "filter_threshold": self.args.filter_threshold, "min_acceptance": self.args.min_acceptance,
                   "partial": True}
        try:
            xs, ys, manifest = generate_set(ckpt, self.dir / "synthetic_filtered", self.seed, request)
        except SelectionError as err:  # partial=true raises only when every class failed: no synthetic image
            self.result["filter"] = {"failed": sorted(per_class) if isinstance(per_class, dict) else self.names,
                                     "error": str(err)}
            return x[:0], y[:0]
        sel = manifest["selection"]
        self.result["filter"] = {"per_class": {c: {k_: v.get(k_) for k_ in ("requested", "candidates", "kept",
                                                                               "acceptance_rate", "passed", "written")}
                                               for c, v in sel["per_class"].items()},
                                 "failed": sel.get("failed", [])}
        self.result["seconds"]["generate"] = round(time.perf_counter() - t, 1)
        return xs, ys

    def targets(self, clf, x, y, soft: bool):
        """Training targets of pseudo-labelled / synthetic images: ``y``, or with ``soft`` the filter's softmax."""
        from ganlab.metrics.classifier import predict

        return predict(clf, x, probabilities=True).astype("float32") if soft else y

    def no_synthetic(self, *arms: str, why: str = "no synthetic image passed the filter in any class") -> None:
        for a in arms:
            self.result["arms"][a] = {"not_run": why}


def few_labels_job(job: Job) -> None:
    import numpy as np

    from ganlab.metrics.classifier import predict

    a, K = job.args, len(job.names)
    lab = labelled_indices(job.y, job.k, job.seed)
    x_lab, y_lab = job.x[lab], job.y[lab]
    clf = job.arm("real+classic", x_lab, y_lab)  # also the pseudo-labeller and the filter
    pool = np.setdiff1d(np.arange(len(job.y)), lab)
    probs = predict(clf, job.x[pool], probabilities=True)
    keep, plab = pseudo_labels(probs, a.pseudo_threshold)
    x_ps, true = job.x[pool[keep]], job.y[pool[keep]]
    job.result["pseudo"] = {"threshold": a.pseudo_threshold, "pool": len(pool), "kept": len(keep),
                            "kept_per_class": np.bincount(plab, minlength=K).tolist(),
                            "label_accuracy": float((plab == true).mean()) if len(keep) else None,
                            "label_accuracy_per_class": {n: float((true[plab == c] == c).mean())
                                                         for c, n in enumerate(job.names) if (plab == c).any()}}
    soft = a.soft_labels
    y_lab_t = one_hot(y_lab, K) if soft else y_lab
    y_ps_t = probs[keep].astype("float32") if soft else plab
    x_lp, y_lp = np.concatenate([x_lab, x_ps]), np.concatenate([y_lab_t, y_ps_t])
    job.arm("pseudo", x_lp, y_lp)
    ckpt = job.gan(np.concatenate([x_lab, x_ps]), np.concatenate([y_lab, plab]))
    xs, ys = job.synthetic(ckpt, clf, a.m)
    if not len(ys):
        return job.no_synthetic("real+synthetic", "pseudo+synthetic")
    ys_t = job.targets(clf, xs, ys, soft)
    for name, (xr, yr) in (("real+synthetic", (x_lab, y_lab_t)), ("pseudo+synthetic", (x_lp, y_lp))):
        job.arm(name, np.concatenate([xr, xs]), np.concatenate([yr, ys_t]),
                sample_weights=mix_weights(len(xr), len(xs), a.mix))


def imbalanced_job(job: Job) -> None:
    import numpy as np

    a, K = job.args, len(job.names)
    idx, minority = imbalanced_split(job.y, job.k, job.seed, a.minority)
    x, y = job.x[idx], job.y[idx]
    counts = np.bincount(y, minlength=K)
    job.result["split"] = {"minority_classes": minority, "minority_names": [job.names[c] for c in minority],
                           "counts": counts.tolist()}
    # the filter: the oversampling classifier (class-balanced loss needs many more steps to recall minority classes,
    # results/clf_steps.md)
    clf = job.arm("oversample+classic", x, y, minority, sample_weights=1.0 / counts[y])
    job.arm("class-balanced", x, y, minority, class_weights=class_balanced_weights(counts, a.beta))
    ckpt = job.gan(*gan_oversampled(x, y, minority, a.gan_oversample))
    fill = {job.names[c]: a.target - int(counts[c]) for c in minority if a.target > counts[c]}
    if not fill:
        return job.no_synthetic("synthetic", "synthetic+class-balanced", why=f"--target {a.target} <= k: nothing to fill")
    xs, ys = job.synthetic(ckpt, clf, fill)
    if not len(ys):
        return job.no_synthetic("synthetic", "synthetic+class-balanced")
    xu, yu = np.concatenate([x, xs]), np.concatenate([y, ys])
    job.result["synthetic_counts"] = np.bincount(ys, minlength=K).tolist()
    yu_t = np.concatenate([one_hot(y, K), job.targets(clf, xs, ys, True)]) if a.soft_labels else yu
    # each synthetic arm is its classic counterpart on the filled set: sampled class-balanced / Cui-weighted
    job.arm("synthetic", xu, yu_t, minority, sample_weights=1.0 / np.bincount(yu, minlength=K)[yu])
    job.arm("synthetic+class-balanced", xu, yu_t, minority,
            class_weights=class_balanced_weights(np.bincount(yu, minlength=K), a.beta))
    is_syn = np.arange(len(yu)) >= len(y)
    for share in a.fill_shares or []:  # the filled classes' synthetic images at a fixed share of their draws
        job.arm(f"synthetic@{share:g}", xu, yu_t, minority, sample_weights=share_weights(yu, is_syn, share))


JOBS = {"few-labels": few_labels_job, "imbalanced": imbalanced_job}


def run_job(args, setting: str, k: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    c0, t0, load0 = cpu_seconds(), time.perf_counter(), os.getloadavg()
    job = Job(args, setting, k, seed)
    JOBS[setting](job)
    job.result.update({"cpu_seconds": round(cpu_seconds() - c0, 1), "wall_seconds": round(time.perf_counter() - t0, 1),
                       "loadavg": {"start": list(load0), "end": list(os.getloadavg())}, "threads": args.threads,
                       "cpus": os.cpu_count()})
    return job.result


# -- the grid ---------------------------------------------------------------------------------------------
def job_name(setting: str, k: int, seed: int) -> str:
    return f"{setting}_k{k}_s{seed}"


def job_done(path: Path, setting: str) -> bool:
    """A job file with a result (or a recorded reason for none) for every arm of the setting."""
    if not path.exists():
        return False
    job = json.loads(path.read_text())
    return set(arms_of(setting, job.get("options", {}))) <= set(job.get("arms", {}))


def pending(setting: str, ks, seeds, jobs_dir: Path, fresh: bool = False) -> list[tuple[int, int]]:
    """The (k, seed) jobs of the grid without a finished job file (all of them with ``fresh``)."""
    return [(k, s) for k in ks for s in seeds
            if fresh or not job_done(jobs_dir / f"{job_name(setting, k, s)}.json", setting)]


def job_argv(args) -> list[str]:
    """The command-line arguments that make a job subprocess run with the same options as ``args``."""
    argv = [args.setting]
    for key, v in {**options(args), "threads": args.threads, "work": args.work, "data": args.data}.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(v, list):  # always passed, so an empty list stays empty
            argv += [flag, *map(str, v)]
        elif v is True:
            argv.append(flag)
        elif v is not None and v is not False:
            argv += [flag, str(v)]
    return argv


def finished_with_other_options(args, ks, jobs_dir: Path) -> list[str]:
    """``"<job>: <option> a -> b"`` for each finished job of the grid whose recorded options differ from ``args``."""
    now, out = options(args), []
    for k in ks:
        for s in args.seeds:
            path = jobs_dir / f"{job_name(args.setting, k, s)}.json"
            if job_done(path, args.setting):
                then = json.loads(path.read_text())["options"]
                diff = [f"{o} {then.get(o)} -> {v}" for o, v in now.items() if then.get(o) != v]
                if diff:
                    out.append(f"{path.stem}: {', '.join(diff)}")
    return out


COMMON_OPTIONS = ["gan", "gan_override", "gan_steps", "gan_keep_best", "clf_steps", "m", "filter_threshold",
                  "min_acceptance", "soft_labels"]


def options(args) -> dict:
    """The options a job of ``args.setting`` depends on (recorded in its file, compared on rerun)."""
    return {k: getattr(args, k) for k in COMMON_OPTIONS + SETTINGS[args.setting]["options"]}


# -- aggregate ----------------------------------------------------------------------------------------------
def aggregate(setting: str, jobs: list[dict]) -> dict:
    """Per k: every arm's metrics over seeds, the baseline per metric (the better classic arm by mean) and every
    arm's paired gain over it, plus the GAN's per-class label fidelity and the cost of each job."""
    spec = SETTINGS[setting]
    rows = []
    for k in sorted({j["k"] for j in jobs}):
        js = sorted((j for j in jobs if j["k"] == k), key=lambda j: j["seed"])
        arms = arms_of(setting, js[0]["options"])
        ran = [a for a in arms if all("accuracy" in j["arms"].get(a, {}) for j in js)]
        row = {"k": k, "seeds": [j["seed"] for j in js], "metrics": {}, "baseline": {}, "gain": {},
               "not_run": {a: sorted({j["arms"].get(a, {}).get("not_run", "missing") for j in js})
                           for a in arms if a not in ran}}
        for m in spec["metrics"]:
            row["metrics"][m] = {a: ci95([j["arms"][a][m] for j in js]) for a in ran}
            base = max((a for a in spec["classic"] if a in ran), key=lambda a: row["metrics"][m][a]["mean"])
            row["baseline"][m] = base
            row["gain"][m] = {a: ci95([j["arms"][a][m] - j["arms"][base][m] for j in js]) for a in ran if a != base}
        fid = [j["gan_label_fidelity"] for j in js if "gan_label_fidelity" in j]
        if fid:
            row["gan_label_fidelity"] = {n: {"mean": sum(f[n] for f in fid) / len(fid), "min": min(f[n] for f in fid)}
                                         for n in fid[0]}
        row["per_class"] = {a: {n: sum(j["arms"][a]["per_class"][n] for j in js) / len(js)
                                for n in js[0]["arms"][a]["per_class"]} for a in ran}
        rows.append(row)
    return {"setting": setting, "rows": rows, "jobs": jobs, "options": jobs[0]["options"] if jobs else {},
            "cpu_seconds_total": round(sum(j["cpu_seconds"] for j in jobs), 1)}


def write_outputs(summary: dict, out: Path) -> None:
    """``results.json``, ``results.md`` and ``gains.png`` in ``out``, from the summary of the job files."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    setting, o = summary["setting"], summary["options"]
    spec = SETTINGS[setting]
    pct, sgn = (lambda d: cell(d, ".1f")), (lambda d: cell(d, "+.1f"))
    lines = [f"# {setting}: Fashion-MNIST, scored on the 10,000 real test images", "",
             f"GAN `{o['gan']}` ({' '.join(o['gan_override'])}), {o['gan_steps']} generator steps; CompactCNN "
             f"{o['clf_steps']} steps of batch 128 with classic augmentation (flips + 2-px translations) in every arm; "
             f"options: `{json.dumps({k: v for k, v in o.items() if k not in ('gan', 'gan_override')})}`. "
             "Mean ± 95 % CI (Student t over seeds), %; gains paired by seed, points, over the baseline of that "
             "metric (the better classic arm, marked *).", ""]
    for r in summary["rows"]:
        lines += [f"## k = {r['k']} (seeds {', '.join(map(str, r['seeds']))})", "",
                  "| arm | " + " | ".join(METRIC_NAMES[m] for m in spec["metrics"]) + " | "
                  + " | ".join(f"gain, {METRIC_NAMES[m]}" for m in spec["metrics"]) + " |",
                  "| --- |" + " ---: |" * (2 * len(spec["metrics"]))]
        for a in arms_of(setting, o):
            if a in r["not_run"]:
                lines.append(f"| {a} | not run: {'; '.join(r['not_run'][a])} |" + " |" * (2 * len(spec["metrics"]) - 1))
                continue
            vals = [pct(r["metrics"][m][a]) + ("*" if r["baseline"][m] == a else "") for m in spec["metrics"]]
            gains = [sgn(r["gain"][m][a]) if a in r["gain"][m] else "baseline" for m in spec["metrics"]]
            lines.append(f"| {a} | " + " | ".join(vals + gains) + " |")
        lines.append("")
        if "gan_label_fidelity" in r:
            f = r["gan_label_fidelity"]
            lines += ["GAN label fidelity per class (plain samples read by the filtering classifier; mean / min over "
                      "seeds, %):", "", "| " + " | ".join(f) + " |", "|" + " ---: |" * len(f),
                      "| " + " | ".join(f"{100 * v['mean']:.0f} / {100 * v['min']:.0f}" for v in f.values()) + " |", ""]
        names = list(next(iter(r["per_class"].values()), {}))
        if names:
            lines += ["Per-class test recall (%, mean over seeds):", "", "| arm | " + " | ".join(names) + " |",
                      "| --- |" + " ---: |" * len(names)]
            lines += [f"| {a} | " + " | ".join(f"{100 * v:.1f}" for v in pc.values()) + " |"
                      for a, pc in r["per_class"].items()]
            lines.append("")
    lines += ["## Jobs", "", "| job | CPU s | wall s | load average start / end (1 min) | details |",
              "| --- | ---: | ---: | ---: | --- |"]
    for j in summary["jobs"]:
        detail = (f"pseudo-labelled kept {j['pseudo']['kept']} of {j['pseudo']['pool']}, label accuracy "
                  f"{100 * j['pseudo']['label_accuracy']:.1f} %" if "pseudo" in j and j["pseudo"]["label_accuracy"]
                  is not None else f"minority: {', '.join(j['split']['minority_names'])}" if "split" in j else "")
        kept = j.get("gan_checkpoint", {})
        if "generator_step" in kept:
            detail += f"; GAN checkpoint kept at generator step {kept['generator_step']}"
        elif "global_step" in kept:  # files written before generator_step was recorded: optimizer steps, D + G
            detail += f"; GAN checkpoint kept at global step {kept['global_step']} (D and G optimizer steps)"
        failed = j.get("filter", {}).get("failed")
        detail += f"; filter failed for {', '.join(failed)}" if failed else ""
        lines.append(f"| {job_name(setting, j['k'], j['seed'])} | {j['cpu_seconds']:.0f} | {j['wall_seconds']:.0f} | "
                     f"{j['loadavg']['start'][0]:.1f} / {j['loadavg']['end'][0]:.1f} | {detail} |")
    lines += ["", f"Total CPU time of these jobs: {summary['cpu_seconds_total'] / 60:.1f} min."]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    gains_figure(summary, out / "gains.png")


def cell(d: dict, fmt: str) -> str:
    """``mean ± 95 % half-width`` in points (``(1 seed)`` where there is no interval)."""
    half = f" ± {100 * d['ci95']:.1f}" if d["ci95"] == d["ci95"] else " (1 seed)"
    return f"{100 * d['mean']:{fmt}}{half}"


def gains_figure(summary: dict, path: Path) -> None:
    """Per metric: every arm's paired gain over the baseline (mean, 95 % CI), one group of bars per k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    spec = SETTINGS[summary["setting"]]
    fig, axes = plt.subplots(1, len(spec["metrics"]), figsize=(4.5 * len(spec["metrics"]), 3.8), dpi=110,
                             squeeze=False)
    for ax, m in zip(axes[0], spec["metrics"]):
        arms = arms_of(summary["setting"], summary["options"])
        width = 0.8 / len(arms)
        for i, a in enumerate(arms):
            pts = [(x, r["gain"][m].get(a)) for x, r in enumerate(summary["rows"])]
            pts = [(x, g) for x, g in pts if g]
            if not pts:  # the baseline at every k (named under the k)
                continue
            ax.bar([x + i * width for x, _ in pts], [100 * g["mean"] for _, g in pts], width, color=f"C{i}",
                   yerr=[100 * np.nan_to_num(g["ci95"]) for _, g in pts], capsize=3, label=a)
        ax.axhline(0, color="k", lw=0.8)
        ax.axhline(2, color="grey", lw=0.8, ls="--")
        ax.set_xticks(np.arange(len(summary["rows"])) + 0.4 - width / 2,
                      [f"k = {r['k']}\nbaseline: {r['baseline'][m]}" for r in summary["rows"]], fontsize=8)
        ax.set_ylabel(f"gain in {METRIC_NAMES[m]} (points)")
        ax.set_title(f"{summary['setting']}: vs the better classic arm", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def aggregate_setting(setting: str, ks, seeds, work: Path, out: Path) -> dict | None:
    """Tables and figures of a setting from its job files in ``work/<setting>/jobs`` (the grid's missing ones listed)."""
    jobs_dir = work / setting / "jobs"
    names = [job_name(setting, k, s) for k in ks for s in seeds]
    found = [n for n in names if job_done(jobs_dir / f"{n}.json", setting)]
    if len(found) < len(names):
        print(f"{setting}: no finished job file for {', '.join(n for n in names if n not in found)}", flush=True)
    if not found:
        return None
    summary = aggregate(setting, [json.loads((jobs_dir / f"{n}.json").read_text()) for n in found])
    summary["not_run"] = [n for n in names if n not in found]
    write_outputs(summary, out)
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("setting", choices=list(SETTINGS))
    p.add_argument("--ks", type=int, nargs="+", help="k's (default: few-labels 10 50, imbalanced 20 100)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--gan", default="cgan_fashion_strong", help="the cGAN experiment config")
    p.add_argument("--gan-override", nargs="*", default=GAN_OVERRIDES, help="Hydra overrides of the cGAN")
    p.add_argument("--gan-steps", type=int, default=2000)
    p.add_argument("--gan-keep-best", type=int, default=0, metavar="N",
                   help="score the GAN's class fidelity every N steps and sample from the best checkpoint (0: the last)")
    p.add_argument("--clf-steps", type=int, default=1500, help="classifier steps (batch 128) of every arm")
    p.add_argument("--m", type=int, default=500, help="few-labels: synthetic images per class; both: plain "
                   "samples per class for the GAN's label fidelity")
    p.add_argument("--pseudo-threshold", type=float, default=0.9, help="few-labels: confidence to keep a pseudo-label")
    p.add_argument("--filter-threshold", type=float, default=0.9,
                   help="keep a synthetic image when the filter classifier gives its class at least this")
    p.add_argument("--min-acceptance", type=float, default=0.02, help="a class kept fewer than this fails the filter")
    p.add_argument("--mix", type=float, default=0.25, help="few-labels: synthetic fraction of every batch")
    p.add_argument("--soft-labels", action="store_true",
                   help="pseudo-labelled and synthetic images train on the filter classifier's softmax")
    p.add_argument("--minority", type=int, default=3, help="imbalanced: how many classes are cut to k")
    p.add_argument("--target", type=int, default=2000, help="imbalanced: images per minority class after filling")
    p.add_argument("--gan-oversample", type=int, default=2000,
                   help="imbalanced: the GAN's data repeats each minority class's images up to this many (0: no)")
    p.add_argument("--beta", type=float, default=0.9999, help="imbalanced: Cui et al.'s beta")
    p.add_argument("--fill-shares", type=float, nargs="*", default=[], metavar="S",
                   help="imbalanced: one more arm per S, synthetic@S: the filled set sampled class-balanced with the "
                        "synthetic images at share S of their class's draws (the real ones 1 - S)")
    p.add_argument("--jobs", type=int, default=1, help="jobs run in parallel (subprocesses)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--data", default=None, help="the Fashion-MNIST folder (default: $GANLAB_DATA/fashion-mnist)")
    p.add_argument("--work", default="/tmp/ganlab-settings")
    p.add_argument("--out", default=None, help="default: results/<setting>")
    p.add_argument("--fresh", action="store_true", help="rerun finished jobs")
    p.add_argument("--aggregate-only", action="store_true", help="run no job: tables from the finished ones")
    p.add_argument("--only", type=int, nargs=2, metavar=("K", "SEED"), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.gan.startswith("experiment="):
        args.gan = args.gan.split("=", 1)[1]
    ks = args.ks or SETTINGS[args.setting]["ks"]
    work = Path(args.work)
    jobs_dir = work / args.setting / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    if args.only:  # one job (a subprocess of the lanes)
        k, seed = args.only
        res = run_job(args, args.setting, k, seed)
        from ganlab.utils.files import atomic_write_text

        atomic_write_text(json.dumps(res, indent=1), str(jobs_dir / f"{job_name(args.setting, k, seed)}.json"))
        return
    if not args.aggregate_only and not args.fresh:
        other = finished_with_other_options(args, ks, jobs_dir)
        if other:
            sys.exit(f"{jobs_dir}: finished job(s) ran with other options ({'; '.join(other)}); choose another "
                     "--work, or --fresh to rerun them with these")
    if not args.aggregate_only:
        todo = sorted(pending(args.setting, ks, args.seeds, jobs_dir, args.fresh), key=lambda j: -j[0])
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
        commands = [(job_name(args.setting, k, s), [sys.executable, __file__, *job_argv(args), "--only", str(k), str(s)])
                    for k, s in todo]
        for k, s in todo:
            print(f"to run: {job_name(args.setting, k, s)}", flush=True)
        run_lanes(commands, args.jobs, work / args.setting, env,
                  lambda n: {a: round(v.get("accuracy", float("nan")), 4) for a, v in
                             json.loads((jobs_dir / f"{n}.json").read_text())["arms"].items()})
    summary = aggregate_setting(args.setting, ks, args.seeds, work, Path(args.out or HERE / "results" / args.setting))
    if summary:
        print((Path(args.out or HERE / "results" / args.setting) / "results.md").read_text())


if __name__ == "__main__":
    main()
