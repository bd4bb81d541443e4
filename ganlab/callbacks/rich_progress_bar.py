"""The training progress bar in generator steps: ``G step k/N`` with rate and ETA.

Lightning's ``RichProgressBar`` counts batches of the current epoch against ``max_steps``
(optimizer steps: ``n_critic + 1`` per generator step) and titles the bar ``Epoch e/max_epochs-1``,
which reads ``Epoch 4/-2`` for a step-limited run. Here the bar's position is the module's
``generator_step`` (restored from the checkpoint on resume) and its total is the run's generator
steps, ``max_steps // (n_critic + 1)``.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar as LightningRichProgressBar


def total_generator_steps(trainer, pl_module) -> int | None:
    """The run's generator steps, or None when ``max_steps`` does not limit it."""
    if trainer.max_steps is None or trainer.max_steps < 0:
        return None
    return trainer.max_steps // (int(getattr(pl_module, "n_critic", 1)) + 1)


class RichProgressBar(LightningRichProgressBar):
    def _get_train_description(self, current_epoch: int) -> str:
        return "G step"

    def _position(self) -> tuple[int, int | float]:
        module = self.trainer.lightning_module
        total = total_generator_steps(self.trainer, module)
        return int(getattr(module, "generator_step", 0)), float("inf") if total is None else total

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Lightning resets its task every epoch (elapsed back to 0, rate unknown: "0:00:00 • -:--:--"
        # after each epoch boundary); one task for the whole run keeps the elapsed time and the ETA
        if self.is_disabled or self.train_progress_bar_id is not None:
            return
        super().on_train_epoch_start(trainer, pl_module)  # creates the task
        if self.progress is not None and self.train_progress_bar_id is not None:
            done, total = self._position()
            self.progress.reset(self.train_progress_bar_id, total=total, completed=done,
                                description=self._get_train_description(0), visible=True)
            self.refresh()

    def on_train_end(self, trainer, pl_module) -> None:
        # the run is over (all steps, trainer.max_time or a stop signal): freeze the bar as finished
        # at the step reached, so it ends "k/k elapsed • 0:00:00" rather than with a stale ETA
        if self.progress is not None and self.train_progress_bar_id is not None:
            done = self._position()[0]
            self.progress.update(self.train_progress_bar_id, total=done, completed=done)
            self.refresh()
        super().on_train_end(trainer, pl_module)

    def _initialize_train_progress_bar_id(self) -> None:  # mid-epoch resume
        done, total = self._position()
        self.train_progress_bar_id = self._add_task(total, self._get_train_description(0))
        self._update(self.train_progress_bar_id, done)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, self._position()[0])
        self._update_metrics(trainer, pl_module)
        self.refresh()


__all__ = ["RichProgressBar", "total_generator_steps"]
