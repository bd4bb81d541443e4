"""``<run>/final_metrics.json``: the final and the best value of every logged scalar.

Sweeps compare jobs with this file (``python -m ganlab.report <multirun dir>``). Each scalar in
``trainer.callback_metrics`` (what the module logs with ``self.log`` and what the metrics callback
puts there, e.g. ``metrics/fid``) is tracked per generator step:

- ``final``: the last value;
- ``best``: the lowest value and the generator step it was seen at, or the highest for names
  where higher is better (:data:`ganlab.metrics.core.MAXIMIZE`: precision, recall, IS, ...;
  ``maximize``: fnmatch patterns instead).

The values are read at the *start* of the next batch (and once more when fitting ends), so
whatever every callback logged in ``on_train_batch_end`` - in whatever order the callbacks run -
is attributed to the generator step that produced it: on logging steps (every
``trainer.log_every_n_steps`` generator steps, when the module hands its scalars to Lightning)
all scalars are read, on other steps only new values of keys matching ``watch`` (``metrics/*``:
what evaluation callbacks put into ``callback_metrics`` at any step). The running best is kept
on the device (no host sync per step; a few microseconds on steps that log nothing).
The file is written by global rank 0 when fitting ends, and also when it fails
(``status: failed`` plus the error), so a diverged sweep job still has a row.
Under DDP the values are rank 0's (the losses are logged without ``sync_dist``).
"""

from __future__ import annotations

import fnmatch
import math
import time
from typing import Any, Sequence

import lightning as L
import torch

from ganlab.metrics.core import metric_mode

from ganlab.utils.files import atomic_write_json


class Summary(L.Callback):
    def __init__(
        self,
        path: str,
        maximize: Sequence[str] | None = None,
        exclude: Sequence[str] = ("epoch", "generator_step"),
        optimized_metric: str | None = None,
        watch: Sequence[str] = ("metrics/*",),
    ) -> None:
        self.path = path
        self.maximize = None if maximize is None else tuple(maximize)
        self.exclude = tuple(exclude or ())
        self.optimized_metric = optimized_metric
        self.watch = tuple(watch or ())
        self._watched: dict[str, bool] = {}
        self._seen: dict[str, Any] = {}
        self._last: dict[str, torch.Tensor] = {}
        self._best: dict[str, torch.Tensor] = {}
        self._best_step: dict[str, torch.Tensor] = {}
        self._t0 = time.time()

    def mode(self, key: str) -> str:
        if self.maximize is None:  # the metrics' own list (ganlab.metrics.core.MAXIMIZE)
            return metric_mode(key)
        return "max" if any(fnmatch.fnmatchcase(key, p) for p in self.maximize) else "min"

    # -- observation ---------------------------------------------------------------------
    def _is_watched(self, key: str) -> bool:
        hit = self._watched.get(key)
        if hit is None:
            hit = self._watched[key] = any(fnmatch.fnmatchcase(key, p) for p in self.watch)
        return hit

    def _observe(self, trainer, step: int, all_keys: bool = True) -> None:
        for key, value in trainer.callback_metrics.items():
            if key in self.exclude or not isinstance(value, torch.Tensor) or value.numel() != 1:
                continue
            if self._seen.get(key) is value or not (all_keys or self._is_watched(key)):
                continue
            self._seen[key] = value
            v = value.detach().reshape(()).float()
            self._last[key] = v
            best = self._best.get(key)
            if best is None:
                self._best[key] = v.clone()
                self._best_step[key] = torch.full((), step, dtype=torch.long, device=v.device)
                continue
            if best.device != v.device:  # e.g. restored from a checkpoint on the CPU
                best = best.to(v.device)
                self._best_step[key] = self._best_step[key].to(v.device)
            # NaN never becomes the best (a NaN best is replaced by the first number); ties keep
            # the earlier step
            better = (v > best) if self.mode(key) == "max" else (v < best)
            better = better | (torch.isnan(best) & ~torch.isnan(v))
            self._best[key] = torch.where(better, v, best)
            self._best_step[key] = torch.where(better, torch.full_like(self._best_step[key], step),
                                               self._best_step[key])

    def on_fit_start(self, trainer, pl_module) -> None:
        self._t0 = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # what was logged during/after the previous batch belongs to the current generator_step
        step = int(pl_module.generator_step)
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1))
        log_step = step % every == 0 or bool(getattr(trainer, "fast_dev_run", False))
        self._observe(trainer, step, all_keys=log_step)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._observe(trainer, int(pl_module.generator_step))
        self.write(trainer, pl_module, "completed")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._observe(trainer, int(pl_module.generator_step))
        status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        self.write(trainer, pl_module, status, error=f"{type(exception).__name__}: {exception}")

    # -- output ----------------------------------------------------------------------------
    def summary(self, trainer=None, pl_module=None, status: str = "completed", error: str | None = None) -> dict:
        final = {k: _num(v) for k, v in sorted(self._last.items())}
        best = {k: {"value": _num(self._best[k]), "generator_step": int(self._best_step[k]), "mode": self.mode(k)}
                for k in sorted(self._best)}
        out: dict[str, Any] = {"status": status}
        if error:
            out["error"] = error
        if pl_module is not None:
            out["generator_step"] = int(pl_module.generator_step)
        if trainer is not None:
            out["global_step"] = int(trainer.global_step)
            out["world_size"] = int(trainer.world_size)
        out["seconds"] = round(time.time() - self._t0, 1)
        if self.optimized_metric:
            name = self.optimized_metric
            out["optimized_metric"] = {"name": name, "final": final.get(name),
                                       "best": best.get(name, {}).get("value"), "mode": self.mode(name)}
        out["final"] = final
        out["best"] = best
        return out

    def write(self, trainer, pl_module, status: str = "completed", error: str | None = None) -> None:
        if not trainer.is_global_zero:
            return
        data = self.summary(trainer, pl_module, status, error)
        atomic_write_json(data, self.path, allow_nan=True)

    # -- resume: the best values so far travel with the checkpoint ----------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"best": {k: [float(v), int(self._best_step[k])] for k, v in self._best.items()},
                "last": {k: float(v) for k, v in self._last.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._best = {k: torch.tensor(float(v)) for k, (v, _) in state.get("best", {}).items()}
        self._best_step = {k: torch.tensor(int(s)) for k, (_, s) in state.get("best", {}).items()}
        self._last = {k: torch.tensor(float(v)) for k, v in state.get("last", {}).items()}


def _num(v: torch.Tensor | float) -> float | None:
    x = float(v)
    return None if math.isnan(x) else x


__all__ = ["Summary"]
