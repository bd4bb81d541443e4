"""Loss history per generator step: ``<run>/losses.csv`` and ``<run>/losses.png`` (D and G
losses, D(x) and D(G(z)) scores, and with ADA its probability p and overfitting signal r_t),
written every N steps and at the end.

Works with any logger (it reads the step outputs of the GAN module, not a logger's files) and
survives resume (the history is part of the callback's checkpointed state). Values stay on the
device until written, so recording adds no host sync per step.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch

KEYS = ("loss/d", "loss/g", "d/real_score", "d/fake_score")
# recorded when the module returns them (ADA: model/augment=ada)
OPTIONAL_KEYS = ("aug/p", "aug/r_t")


class LossHistory(L.Callback):
    def __init__(self, csv_path: str, plot_path: str, every_n_steps: int = 500, smooth: int = 25) -> None:
        self.csv_path = Path(csv_path)
        self.plot_path = Path(plot_path)
        self.every_n_steps = every_n_steps
        self.smooth = smooth
        self.steps: list[int] = []
        self.keys: tuple[str, ...] = KEYS
        self.values: dict[str, list[float]] = {k: [] for k in KEYS}
        self._pending: list[tuple[int, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not outputs:
            return
        if not self.steps and not self._pending:  # the first step decides the columns
            self.keys = KEYS + tuple(k for k in OPTIONAL_KEYS if k in outputs)
            self.values = {k: self.values.get(k, []) for k in self.keys}
        self._pending.append((pl_module.generator_step, torch.stack([outputs[k].float() for k in self.keys])))
        if self.every_n_steps and pl_module.generator_step % self.every_n_steps == 0:
            self.write(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.write(trainer)

    def _flush(self) -> None:
        if not self._pending:
            return
        values = torch.stack([v for _, v in self._pending]).cpu().tolist()
        for (step, _), row in zip(self._pending, values):
            self.steps.append(step)
            for k, v in zip(self.keys, row):
                self.values[k].append(v)
        self._pending.clear()

    def write(self, trainer) -> None:
        self._flush()
        if not trainer.is_global_zero or not self.steps:
            return
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["generator_step", *self.keys])
            w.writerows(zip(self.steps, *(self.values[k] for k in self.keys)))
        self._plot()

    def _plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [(KEYS[:2], "losses"), (KEYS[2:], "discriminator scores")]
        if len(self.keys) > len(KEYS):
            panels.append((self.keys[len(KEYS):], "ADA: augmentation probability p, overfitting signal r_t"))
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3 * len(panels)), sharex=True)
        for ax, (keys, title) in zip(axes, panels):
            for k in keys:
                if k in OPTIONAL_KEYS:  # p and r_t (an interval's mean) are smooth already
                    ax.plot(self.steps, self.values[k], label=k)
                    continue
                ax.plot(self.steps, self.values[k], alpha=0.3, linewidth=0.8)
                ax.plot(self.steps, _moving_average(self.values[k], self.smooth), label=k, color=ax.lines[-1].get_color())
            ax.set_title(title)
            ax.legend(loc="best")
            ax.grid(alpha=0.3)
        axes[-1].set_xlabel("generator step")
        fig.tight_layout()
        self.plot_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.plot_path, dpi=100)
        plt.close(fig)

    def state_dict(self) -> dict:
        self._flush()
        return {"steps": list(self.steps), "values": {k: list(v) for k, v in self.values.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.steps = list(state["steps"])
        self.keys = KEYS + tuple(k for k in OPTIONAL_KEYS if k in state["values"])
        self.values = {k: list(state["values"].get(k, [])) for k in self.keys}


def _moving_average(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out
