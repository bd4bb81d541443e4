"""Run checkpoints: Lightning's ``ModelCheckpoint`` plus the two guarantees it lacks.

* ``last.ckpt`` holds the state at the end of *every* run: Lightning writes it at the end only
  when no periodic save happened before, so a run whose ``generator_steps`` is not a multiple of
  ``checkpoint_every`` (or that stopped at ``max_time``) lost its tail; here ``on_train_end``
  writes it whenever the last save was at an earlier step.
* Stop signals (:mod:`ganlab.signals`): while training, SIGTERM / SIGINT / SIGUSR1 / SIGUSR2
  only set a flag; at the end of the current step this callback writes ``last.ckpt`` (a
  resumable mid-epoch checkpoint) and stops the trainer. Under DDP the flag is OR-reduced over
  ranks every step, so all ranks stop after the same step (a signal to any rank stops all).

A non-finite loss raises before this callback runs, so nothing is written from that step and
``last.ckpt`` stays the last checkpoint written from finite weights.
"""

from __future__ import annotations

import logging
import signal

from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

from ganlab import signals

log = logging.getLogger(__name__)


class ModelCheckpoint(LightningModelCheckpoint):
    stopped_by: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        signals.install()  # over Lightning's SIGTERM handler, which only exits
        signals.enter_deferred()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        stop = signals.requested() is not None
        if trainer.world_size > 1:
            stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False))
        if stop and not trainer.should_stop:
            self.stopped_by = signals.requested() or signal.SIGTERM
            self.save_last_now(trainer)
            log.warning("stopped by %s after generator step %d; %s holds this state (resume with ckpt_path=auto)",
                        signal.Signals(self.stopped_by).name, pl_module.generator_step, self.last_model_path)
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        signals.leave_deferred()
        if not trainer.fast_dev_run:
            self.save_last_now(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        signals.leave_deferred()
        super().on_exception(trainer, pl_module, exception)

    def save_last_now(self, trainer) -> None:
        """Write ``last.ckpt`` unless it was written at this very step."""
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


__all__ = ["ModelCheckpoint"]
