"""In-training evaluation: FID / KID / precision-recall (/ density-coverage / IS) every N generator steps.

Every ``every_n_steps`` generator updates (``pl_module.generator_step``; ``trainer.global_step``
counts the discriminator's optimizer steps too) and once at the end of training, the callback

1. has :class:`ganlab.metrics.evaluator.Evaluator` score ``n_fake`` samples of the EMA generator
   with fixed noise (``seed``: the same z at every evaluation, so the curve is not noisier than it
   must be) against ``n_real`` images of ``trainer.datamodule``'s ``split`` (features cached on disk,
   so from the second evaluation on only the fakes cost anything), with the protocol of
   ``conf/metrics/`` (on a CPU at most ``cpu_n_fake`` / ``cpu_n_real`` images, stated in the record);
2. the callback itself only schedules, logs and keeps the best checkpoint:
   logs ``metrics/<name>`` to every logger (``logger.log_metrics(..., step=generator_step)``, plus
   ``metrics/generator_step``) and into ``trainer.callback_metrics``;
   writes ``<run_dir>/metrics.json`` (protocol, history, best) and, when FID improved, saves
   ``<dirpath>/best_fid.ckpt`` with ``trainer.save_checkpoint``.

Distributed runs: the evaluation runs on global rank 0 only; its result is broadcast to the other
ranks (which wait in the broadcast), so every rank agrees on the best FID and all of them enter
``trainer.save_checkpoint`` together, as that call requires. An evaluation longer than the process
group's timeout (Lightning's default: 30 min) would break DDP: keep ``n_fake`` in proportion.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any

import lightning as L
import torch

from ganlab import signals
from ganlab.metrics.evaluator import Evaluator, OverBudget
from ganlab.metrics.protocol import Protocol
from ganlab.metrics.results import write_json
from ganlab.utils.rng import untouched_rng

log = logging.getLogger(__name__)


class Metrics(L.Callback):
    """See the module docstring. Arguments:

    every_n_steps: generator steps between evaluations (0: only at the end of training).
    at_train_end: evaluate once more when training ends (unless that step was just evaluated).
    device: extractor device (None: the module's device). run_dir: where ``metrics.json`` goes (None:
        ``trainer.default_root_dir``). dirpath: where ``best_fid.ckpt`` goes (None: the
        ModelCheckpoint's folder, else ``<run_dir>/checkpoints``). save_best: keep that checkpoint.
    extractor: a ready feature extractor (tests / custom features); default InceptionV3.
    cpu_budget: on a CPU, an evaluation may take at most this fraction of the training time so far
        (told after its first batch; else it is skipped with a warning); None: no limit.
    protocol: the keys of :class:`ganlab.metrics.protocol.Protocol` (``metrics``, ``n_fake``,
        ``n_real``, ``split``, ...; defaults: ``conf/metrics/default.yaml``). ``metrics=[]``: no evaluation.
    """

    def __init__(
        self,
        every_n_steps: int = 5000,
        at_train_end: bool = True,
        device: str | None = None,
        run_dir: str | None = None,
        dirpath: str | None = None,
        save_best: bool = True,
        best_ckpt_name: str = "best_fid.ckpt",
        json_name: str = "metrics.json",
        log_prefix: str = "metrics/",
        extractor: Any = None,
        cpu_budget: float | None = 0.25,
        **protocol: Any,
    ) -> None:
        self.every_n_steps = int(every_n_steps or 0)
        self.at_train_end = at_train_end
        self.evaluator = Evaluator(Protocol.from_config(**protocol), extractor=extractor)
        self.device = device
        self.cpu_budget = None if cpu_budget is None else float(cpu_budget)
        self._t_fit, self._t_evaluating = None, 0.0
        self.run_dir = run_dir
        self.dirpath = dirpath
        self.save_best = save_best
        self.best_ckpt_name = best_ckpt_name
        self.json_name = json_name
        self.log_prefix = log_prefix
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.protocol: dict[str, Any] | None = None
        self._last_step = -1
        if self.evaluator.enabled and "fid" not in self.evaluator.requested.metrics and save_best:
            warnings.warn("Metrics: no 'fid' in metrics, so no best_fid.ckpt will be kept")

    # -- paths -------------------------------------------------------------------------------
    def _run_dir(self, trainer) -> str:
        return self.run_dir or trainer.default_root_dir

    def _ckpt_dir(self, trainer) -> str:
        if self.dirpath:
            return self.dirpath
        cb = trainer.checkpoint_callback
        if cb is not None and getattr(cb, "dirpath", None):
            return cb.dirpath
        return os.path.join(self._run_dir(trainer), "checkpoints")

    @property
    def best_ckpt_path(self) -> str | None:
        return None if self.best is None else self.best.get("ckpt_path")

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or not self.evaluator.enabled:
            return
        if self.evaluator.device is None:  # fail fast: find (or convert) the weights before training starts
            # the module is moved to its device only after setup hooks: ask the strategy
            self._bind(trainer.strategy.root_device)

    def _bind(self, device: torch.device) -> None:
        """Build the extractor on ``device`` (or the configured one). Building draws initial weights, so it
        happens outside the run's random stream: training with and without this callback stays the same."""
        with untouched_rng(device):
            self.evaluator.bind(self.device or str(device))

    def on_train_start(self, trainer, pl_module) -> None:
        self._t_fit = time.perf_counter()

    def _budget_s(self) -> float | None:
        """Seconds an evaluation on a CPU may take now: ``cpu_budget`` x the training time so far."""
        if self.cpu_budget is None or self._t_fit is None:
            return None
        return self.cpu_budget * max(time.perf_counter() - self._t_fit - self._t_evaluating, 0.0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = int(pl_module.generator_step)
        if self.evaluator.enabled and self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if signals.requested() is not None:  # stopping for a signal: save and go, no final evaluation
            return
        if self.evaluator.enabled and self.at_train_end and int(pl_module.generator_step) != self._last_step:
            self.evaluate(trainer, pl_module)

    # -- the evaluation ----------------------------------------------------------------------
    def evaluate(self, trainer, pl_module) -> dict[str, float] | None:
        step = int(pl_module.generator_step)
        self._last_step = step
        record = None
        if trainer.is_global_zero:
            t0 = time.perf_counter()
            try:  # a stop signal abandons the evaluation at once (the step's checkpoint follows)
                with signals.immediate():
                    record = self._compute(trainer, pl_module)
            except signals.StopRequested as err:
                log.warning("metrics evaluation at generator step %d abandoned: %s", step, err)
            except OverBudget as err:
                log.warning("metrics evaluation at generator step %d skipped: on CPU %s (cpu_budget=%g of the "
                            "training time so far); callbacks.metrics.cpu_budget=null evaluates anyway",
                            step, err, self.cpu_budget)
            self._t_evaluating += time.perf_counter() - t0
        if trainer.world_size > 1:
            record = trainer.strategy.broadcast(record, src=0)
        if record is None:
            return None
        values = record["values"]
        improved = "fid" in values and (self.best is None or values["fid"] < self.best["fid"])
        entry = {"generator_step": step, "global_step": int(trainer.global_step),
                 "epoch": int(trainer.current_epoch), **values, "seconds": record["seconds"]}
        self.history.append(entry)
        prefixed = {f"{self.log_prefix}{k}": float(v) for k, v in values.items()}
        for k, v in prefixed.items():
            trainer.callback_metrics[k] = torch.tensor(v)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({**prefixed, f"{self.log_prefix}generator_step": float(step)}, step=step)
                logger.save()
        if improved and self.save_best:
            path = os.path.join(self._ckpt_dir(trainer), self.best_ckpt_name)
            self.best = {"generator_step": step, "fid": values["fid"], "ckpt_path": path,
                         **{k: v for k, v in values.items() if k != "fid"}}
            trainer.save_checkpoint(path, weights_only=False)  # resumable; every rank: the call synchronises them
        elif improved:
            self.best = {"generator_step": step, "fid": values["fid"], "ckpt_path": None}
        if trainer.is_global_zero:
            self._write_json(trainer)
        return values

    def _compute(self, trainer, pl_module) -> dict[str, Any]:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "split_images"):
            raise RuntimeError("Metrics needs trainer.datamodule with split_images()/fingerprint/split_digest()")
        ev = self.evaluator
        if ev.device is None:
            self._bind(pl_module.device)
        step = int(pl_module.generator_step)
        fake_source = f"{'EMA ' if ev.protocol.ema else ''}generator, fixed noise"
        scores = ev.score(dm, ev.gan_samples(pl_module, dm), fake_source=fake_source,
                          what=f"generator step {step}", cpu_budget_s=self._budget_s())
        if self.protocol is None:
            self.protocol = scores.protocol
        seconds = {k: scores.seconds[k] for k in ("reference", "fakes", "metrics", "total")}
        return {"values": scores.values,
                "seconds": {**seconds, "reference_extracted": not scores.seconds["reference_from_cache"]}}

    def _write_json(self, trainer) -> None:
        write_json({"protocol": self.protocol, "best": self.best, "history": self.history},
                   os.path.join(self._run_dir(trainer), self.json_name))

    # -- resume ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "best": self.best, "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.best = state_dict.get("best")
        self._last_step = int(state_dict.get("last_step", -1))


__all__ = ["Metrics"]
