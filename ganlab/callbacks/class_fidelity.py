"""Per-class label fidelity during training: does the generator still draw class c as c?

Every ``every_n_steps`` generator steps (and at the end) the EMA generator draws ``per_class`` images of
every class from fixed noise; the label classifier of :mod:`ganlab.metrics.classifier` (a compact CNN
trained once on the real training split, cached on disk) reads them, and the share read as the class
asked for is

* logged to every logger as ``class_fidelity/<class>`` plus ``class_fidelity/min`` and ``/mean``, and
  ``class_fidelity/worst_gap``: the minimum over classes of (fidelity - the classifier's accuracy on that
  class's real held-out images), the number issue 20's target is stated in (0 = every class drawn as
  recognisably as its real images; also in ``trainer.callback_metrics``);
* with ``save_best``: the checkpoint of the best ``worst_gap`` so far kept as ``best_class_fidelity.ckpt``
  (a recipe whose class fidelity swings or collapses late keeps its most class-faithful state; at an equal
  worst gap the one with more shape variety in its least varied class);
  ``min_variety`` > 0 admits only evaluations whose every class reaches that shape variety (below), so a
  generator that draws each class as one clearly recognisable image - 100 % fidelity, collapsed - is never kept;
* the same images' shape variety per class (:func:`ganlab.metrics.classifier.within_class_variety`,
  standardized, against up to ``variety_reference`` real training images of the class; 1 = as varied as
  the real class, near 0 = one image repeated) logged as ``class_variety/min`` and ``/mean``;
* kept in ``<run_dir>/class_fidelity.json`` (every evaluation) and plotted in ``class_fidelity.png``;
* checked: a class below ``threshold`` gets a warning that names it ("class fidelity collapsed ...").

``classifier_seeds`` with more than one seed reads the images with a panel of label classifiers (the same
network and steps, one per training seed): the logged per-class fidelity is the panel's mean, ``worst_gap``
the lowest of the members' own worst gaps (each against its own real accuracy), so a checkpoint is kept only
when every member reads every class as recognisably as its real images. A checkpoint chosen by one classifier
can sit on that classifier's decision boundary between neighbouring classes, where other classifiers read the
same images as the neighbour (experiments/conditional/README.md, Fashion-MNIST, 5 seeds: kept at -1 to +2 by
the choosing classifier, down to -50 by held-out ones; both held-out classifiers agreed in 1 seed of 5 with one
choosing classifier, in 3 of 5 with a panel of three).

Cheap next to FID (no Inception; 10 classes x 50 images classify in well under a second on a CPU, the
classifier's one-off training costs about a minute there). Class labels only (multi-hot attribute
models: :func:`ganlab.metrics.classifier.conditional_report` in ``ganlab.evaluate``).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch

from ganlab.metrics.classifier import warn_collapsed, worst_fidelity_gap
from ganlab.metrics.results import write_json
from ganlab.utils.rng import untouched_rng

log = logging.getLogger(__name__)


class ClassFidelity(L.Callback):
    def __init__(self, every_n_steps: int = 500, per_class: int = 50, threshold: float = 0.5, seed: int = 0,
                 at_train_end: bool = True, run_dir: str | None = None, cache_dir: str | None = None,
                 classifier_steps: int = 1500, log_prefix: str = "class_fidelity/", save_best: bool = False,
                 best_ckpt_name: str = "best_class_fidelity.ckpt", dirpath: str | None = None,
                 min_variety: float = 0.0, variety_reference: int = 1000,
                 classifier_seeds: Sequence[int] = (0,)) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ClassFidelity threshold is a share in [0, 1], got {threshold}")
        if min_variety < 0.0:
            raise ValueError(f"ClassFidelity min_variety is a ratio >= 0, got {min_variety}")
        self.every_n_steps, self.per_class, self.threshold = int(every_n_steps or 0), int(per_class), threshold
        self.seed, self.at_train_end, self.run_dir, self.cache_dir = seed, at_train_end, run_dir, cache_dir
        self.classifier_steps, self.log_prefix = classifier_steps, log_prefix
        self.classifier_seeds = [int(s) for s in classifier_seeds]
        if not self.classifier_seeds or len(set(self.classifier_seeds)) != len(self.classifier_seeds):
            raise ValueError(f"ClassFidelity classifier_seeds must be distinct seeds, at least one; got {classifier_seeds}")
        self.save_best, self.best_ckpt_name, self.dirpath = save_best, best_ckpt_name, dirpath
        self.min_variety, self.variety_reference = float(min_variety), int(variety_reference)
        self._reference: tuple[np.ndarray, np.ndarray] | None = None  # real training images / labels, per class
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # {"generator_step", "worst_gap", "ckpt_path"}
        self._classifiers: list = []  # the label classifiers, one per seed
        self._real_accuracy: list[dict[str, float]] = []  # each one's per-class accuracy on real held-out images
        self._last_step = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(pl_module.generator_step)
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_train_end and int(pl_module.generator_step) != self._last_step:
            self.evaluate(trainer, pl_module)

    def evaluate(self, trainer, pl_module) -> dict[str, float] | None:
        step = self._last_step = int(pl_module.generator_step)
        dm = trainer.datamodule
        if pl_module.label_kind != "class" or dm is None or not getattr(dm, "label_kind", None):
            return None
        names = list(dm.class_names)
        record = None
        if trainer.is_global_zero:
            with untouched_rng(pl_module.device):  # training with and without this callback stays the same
                images, labels = self.samples(pl_module, len(names))
                readings = self.read(pl_module, dm, images, labels, names)
            variety = self.variety(dm, images, labels, names)
            fidelity = {n: float(np.mean([r[n] for r in readings])) for n in names}
            gaps = [worst_fidelity_gap(r, real) for r, real in zip(readings, self._real_accuracy)]
            record = {"fidelity": fidelity, "worst_gap": None if None in gaps else min(g[0] for g in gaps),
                      "worst_gap_by_seed": None if None in gaps or len(gaps) < 2 else [g[0] for g in gaps],
                      "min_variety": min(variety.values()) if variety else None,
                      "mean_variety": float(np.mean(list(variety.values()))) if variety else None}
        if trainer.world_size > 1:  # every rank takes part in saving the best checkpoint
            record = trainer.strategy.broadcast(record, src=0)
        fidelity, gap, min_variety = record["fidelity"], record["worst_gap"], record["min_variety"]
        entry = {"generator_step": step, **fidelity, **({"worst_gap": gap} if gap is not None else {}),
                 **({"worst_gap_by_seed": record["worst_gap_by_seed"]} if record.get("worst_gap_by_seed") else {}),
                 **({"min_variety": min_variety} if min_variety is not None else {})}
        self.history.append(entry)
        values = {f"{self.log_prefix}{n}": v for n, v in fidelity.items()}
        values[f"{self.log_prefix}min"] = min(fidelity.values())
        values[f"{self.log_prefix}mean"] = float(np.mean(list(fidelity.values())))
        if min_variety is not None:
            values["class_variety/min"], values["class_variety/mean"] = min_variety, record["mean_variety"]
        if gap is not None:
            values[f"{self.log_prefix}worst_gap"] = gap
            trainer.callback_metrics[f"{self.log_prefix}worst_gap"] = torch.tensor(gap)
        varied = self.min_variety <= 0.0 or (min_variety is not None and min_variety >= self.min_variety)
        if gap is not None and varied and self._better(gap, min_variety):
            path = os.path.join(self._ckpt_dir(trainer), self.best_ckpt_name) if self.save_best else None
            self.best = {"generator_step": step, "worst_gap": gap, "ckpt_path": path, "min_variety": min_variety}
            if path:
                trainer.save_checkpoint(path, weights_only=False)  # resumable; every rank: the call synchronises them
        if not trainer.is_global_zero:
            return fidelity
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
        warn_collapsed(fidelity, self.threshold, f"generator step {step}")
        run_dir = self.run_dir or trainer.default_root_dir
        real = self._real_accuracy[0] if len(self._real_accuracy) == 1 else dict(zip(map(str, self.classifier_seeds),
                                                                                   self._real_accuracy))
        write_json({"threshold": self.threshold, "per_class": self.per_class, "classifier_seeds": self.classifier_seeds,
                    "real_accuracy": real,
                    "best": self.best, "history": self.history}, os.path.join(run_dir, "class_fidelity.json"))
        plot_history(self.history, names, self.threshold, os.path.join(run_dir, "class_fidelity.png"))
        return fidelity

    def _better(self, gap: float, min_variety: float | None) -> bool:
        """A higher worst gap than the kept checkpoint's; at an equal one (every class read as often - e.g. all
        at 100 % once the classes are learnt), more shape variety in the least varied class."""
        if self.best is None or gap != self.best["worst_gap"]:
            return self.best is None or gap > self.best["worst_gap"]
        return (min_variety or 0.0) > (self.best.get("min_variety") or 0.0)

    def _ckpt_dir(self, trainer) -> str:
        cb = trainer.checkpoint_callback
        if self.dirpath or (cb is not None and getattr(cb, "dirpath", None)):
            return self.dirpath or cb.dirpath
        return os.path.join(self.run_dir or trainer.default_root_dir, "checkpoints")

    def measure(self, pl_module, dm, names: list[str]) -> dict[str, float]:
        """``{class: share of its fixed-noise EMA samples the label classifier reads as it}`` (the first
        classifier of the panel)."""
        return self.read(pl_module, dm, *self.samples(pl_module, len(names)), names)[0]

    def samples(self, pl_module, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_class`` uint8 EMA images of every class from the fixed noise of ``seed``, and their classes."""
        from ganlab.utils.pixels import to_uint8

        labels = torch.arange(num_classes, device=pl_module.device).repeat_interleave(self.per_class)
        z = torch.randn(len(labels), pl_module.z_dim, generator=torch.Generator().manual_seed(self.seed))
        images = torch.cat([to_uint8(pl_module.sample(zb.to(pl_module.device), yb))
                            for zb, yb in zip(z.split(256), labels.split(256))])
        return images, labels

    def read(self, pl_module, dm, images: torch.Tensor, labels: torch.Tensor, names: list[str]) -> list[dict[str, float]]:
        """Every label classifier of the panel (trained on first use, then from its disk cache) reads ``images``:
        one ``{class: fidelity}`` per seed of ``classifier_seeds``."""
        from ganlab.metrics.classifier import DEFAULTS, get_label_classifier, per_class_fidelity

        if not self._classifiers:
            guide = getattr(pl_module, "guidance", None)
            shared = [s for s in self.classifier_seeds if guide is not None
                      and guide.reads_like(s, self.classifier_steps, DEFAULTS["widths"])]
            if shared:
                log.warning("class fidelity: label classifier seed(s) %s also guide the generator (model.guidance): "
                            "their readings are not independent; read the run with other seeds", shared)
            for seed in self.classifier_seeds:
                with torch.enable_grad():  # trained on first use (then cached on disk)
                    clf, info = get_label_classifier(dm, cache_dir=self.cache_dir, device=pl_module.device,
                                                     steps=self.classifier_steps, seed=seed)
                per = (info.get("real_heldout") or {}).get("per_class") or {}
                self._classifiers.append(clf)
                self._real_accuracy.append({n: float(per[n]["accuracy"]) for n in names if n in per})
        return [per_class_fidelity(clf, images, labels.cpu().numpy(), names) for clf in self._classifiers]

    def variety(self, dm, images: torch.Tensor, labels: torch.Tensor, names: list[str]) -> dict[str, float]:
        """Shape variety per class against up to ``variety_reference`` real training images of each class
        (drawn once with a fixed seed); ``{}`` when the data module has no labelled training split."""
        from ganlab.metrics.classifier import within_class_variety

        if self._reference is None:
            real_y = dm.split_labels("train") if hasattr(dm, "split_labels") else None
            if real_y is None:
                return {}
            real_y = np.asarray(real_y)
            rng = np.random.default_rng(self.seed)
            rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(real_y == c))[:self.variety_reference]
                                           for c in range(len(names))]))
            self._reference = (np.asarray(dm.split_images("train")[rows]), real_y[rows])
        return within_class_variety(images.cpu().numpy(), labels.cpu().numpy(), *self._reference, names,
                                    standardize=True)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "last_step": self._last_step, "best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self._last_step = int(state_dict.get("last_step", -1))
        self.best = state_dict.get("best")



def plot_history(history: list[dict[str, Any]], names: list[str], threshold: float, path: str) -> None:
    """One line per class: fidelity against the generator step, the warning threshold dashed; where
    recorded, the lowest class's shape variety in black on its own axis (right)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    steps = [h["generator_step"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    for n in names:
        ax.plot(steps, [100 * h.get(n, np.nan) for h in history], marker="o", label=n)
    ax.axhline(100 * threshold, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="generator step", ylabel="label fidelity (%)", ylim=(-2, 102), title="per-class label fidelity")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    if any("min_variety" in h for h in history):
        right = ax.twinx()
        right.plot(steps, [h.get("min_variety", np.nan) for h in history], color="black", linestyle=":", marker="x")
        right.set(ylabel="shape variety, lowest class (black)", ylim=(0, max(1.0, *(h.get("min_variety", 0) for h in history))))
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


__all__ = ["ClassFidelity", "plot_history"]
