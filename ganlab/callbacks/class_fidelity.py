"""Per-class label fidelity during training: does the generator still draw class c as c?

Every ``every_n_steps`` generator steps (and at the end) the EMA generator draws ``per_class`` images of
every class from fixed noise; the label classifier of :mod:`ganlab.metrics.classifier` (a compact CNN
trained once on the real training split, cached on disk) reads them, and the share read as the class
asked for is

* logged to every logger as ``class_fidelity/<class>`` plus ``class_fidelity/min`` and ``/mean``;
* kept in ``<run_dir>/class_fidelity.json`` (every evaluation) and plotted in ``class_fidelity.png``;
* checked: a class below ``threshold`` gets a warning that names it ("class fidelity collapsed ...").

Cheap next to FID (no Inception; 10 classes x 50 images classify in well under a second on a CPU, the
classifier's one-off training costs about a minute there). Class labels only (multi-hot attribute
models: :func:`ganlab.metrics.classifier.conditional_report` in ``ganlab.evaluate``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import lightning as L
import numpy as np
import torch

from ganlab.metrics.classifier import warn_collapsed
from ganlab.metrics.results import write_json

log = logging.getLogger(__name__)


class ClassFidelity(L.Callback):
    def __init__(self, every_n_steps: int = 500, per_class: int = 50, threshold: float = 0.5, seed: int = 0,
                 at_train_end: bool = True, run_dir: str | None = None, cache_dir: str | None = None,
                 classifier_steps: int = 1500, log_prefix: str = "class_fidelity/") -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ClassFidelity threshold is a share in [0, 1], got {threshold}")
        self.every_n_steps, self.per_class, self.threshold = int(every_n_steps or 0), int(per_class), threshold
        self.seed, self.at_train_end, self.run_dir, self.cache_dir = seed, at_train_end, run_dir, cache_dir
        self.classifier_steps, self.log_prefix = classifier_steps, log_prefix
        self.history: list[dict[str, Any]] = []
        self._classifier = None
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
        if not trainer.is_global_zero:
            return None
        names = list(dm.class_names)
        fidelity = self.measure(pl_module, dm, names)
        entry = {"generator_step": step, **fidelity}
        self.history.append(entry)
        values = {f"{self.log_prefix}{n}": v for n, v in fidelity.items()}
        values[f"{self.log_prefix}min"] = min(fidelity.values())
        values[f"{self.log_prefix}mean"] = float(np.mean(list(fidelity.values())))
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
        warn_collapsed(fidelity, self.threshold, f"generator step {step}")
        run_dir = self.run_dir or trainer.default_root_dir
        write_json({"threshold": self.threshold, "per_class": self.per_class, "history": self.history},
                   os.path.join(run_dir, "class_fidelity.json"))
        plot_history(self.history, names, self.threshold, os.path.join(run_dir, "class_fidelity.png"))
        return fidelity

    def measure(self, pl_module, dm, names: list[str]) -> dict[str, float]:
        """``{class: share of its fixed-noise EMA samples the label classifier reads as it}``."""
        from ganlab.metrics.classifier import get_label_classifier, per_class_fidelity
        from ganlab.utils.pixels import to_uint8

        if self._classifier is None:
            with torch.enable_grad():  # trained on first use (then cached on disk)
                self._classifier, _ = get_label_classifier(dm, cache_dir=self.cache_dir, device=pl_module.device,
                                                           steps=self.classifier_steps)
        labels = torch.arange(len(names), device=pl_module.device).repeat_interleave(self.per_class)
        z = torch.randn(len(labels), pl_module.z_dim, generator=torch.Generator().manual_seed(self.seed))
        images = torch.cat([to_uint8(pl_module.sample(zb.to(pl_module.device), yb))
                            for zb, yb in zip(z.split(256), labels.split(256))])
        return per_class_fidelity(self._classifier, images, labels.cpu().numpy(), names)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self._last_step = int(state_dict.get("last_step", -1))


def plot_history(history: list[dict[str, Any]], names: list[str], threshold: float, path: str) -> None:
    """One line per class: fidelity against the generator step, the warning threshold dashed."""
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
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


__all__ = ["ClassFidelity", "plot_history"]
