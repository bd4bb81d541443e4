"""The non-finite guard: a NaN/inf loss stops the run before any checkpoint is written after it.

Every batch ``record`` folds "is the D or G loss non-finite" into two small device tensors
(the first generator step at which each went bad, and its value) without waiting for the device.
The flag is read

* ``every`` = 1: at once, each batch (one host sync per batch; the default);
* ``every`` = N > 1: every N generator steps a non-blocking copy to pinned host memory is queued
  and read once its CUDA event has completed (on a later step, never waiting); under DDP
  every N steps with waiting, so that all ranks reach the same verdict at the same step;
* always, waiting, by ``check``: before every checkpoint is written (``GAN.on_save_checkpoint``),
  at the last step and at the end of training.

A bad flag raises :class:`NonFiniteLossError` (``python -m ganlab.train`` exits 1); the error names
the step whose loss went non-finite first. Under DDP the verdict is AND-reduced over ranks, so every
rank raises at the same step (a rank that raised alone would leave the others waiting).
"""

from __future__ import annotations

import torch


class NonFiniteLossError(RuntimeError):
    """Raised when a loss becomes NaN/inf; the run stops with the last good checkpoint intact."""


HINT = ("Try a lower learning rate, gradient clipping (model.g_grad_clip / model.d_grad_clip) or "
        "precision=32.")


class FiniteGuard:
    def __init__(self, every: int = 1) -> None:
        self.every = every
        self._first: torch.Tensor | None = None  # (2,) int64: first bad generator step of D / G loss, -1: none
        self._value: torch.Tensor | None = None  # (2,) float32: that loss
        self._host: torch.Tensor | None = None   # pinned copy of both, in flight while _event is set
        self._event = None

    def record(self, step: int, d_loss: torch.Tensor, g_loss: torch.Tensor) -> None:
        """Fold this batch's losses into the flag (device ops only, nothing waits)."""
        losses = torch.stack([d_loss.detach().float().reshape(()), g_loss.detach().float().reshape(())])
        if self._first is None or self._first.device != losses.device:
            self._first = torch.full((2,), -1, dtype=torch.int64, device=losses.device)
            self._value = torch.zeros(2, device=losses.device)
        new = ~torch.isfinite(losses) & (self._first < 0)
        self._first = torch.where(new, step, self._first)
        self._value = torch.where(new, losses, self._value)

    def after_step(self, module, step: int, last: bool = False) -> None:
        """Called by the GAN after the updates of generator step ``step`` (``last``: the run's last
        step, read at once): raise now, or later."""
        trainer = module._trainer
        if self.every == 1 or last:
            return self.check(module, step, sync=self.every == 1)
        if trainer is not None and trainer.world_size > 1:
            if step % self.every == 0:
                self.check(module, step)
            return
        if self._event is not None and self._event.query():
            first, value = self._read(self._host)
            self._event = None
            if first is not None:
                raise NonFiniteLossError(self._message(module, *first[::-1], value, step))
        if step % self.every == 0 and self._event is None:
            self._copy_async()

    def check(self, module, step: int, sync: bool = False) -> None:
        """Read the flag now (waiting for the device) and raise if any loss went non-finite."""
        if self._first is None:
            return
        first, value = self._read(torch.cat([self._first.double(), self._value.double()]).cpu())
        local_ok = first is None
        trainer = module._trainer
        ok = local_ok
        if trainer is not None and trainer.world_size > 1:
            ok = bool(trainer.strategy.reduce_boolean_decision(local_ok, all=True))
        if ok:
            return
        who, bad_step = ("another rank's", step) if local_ok else first[::-1]
        raise NonFiniteLossError(self._message(module, who, bad_step, float("nan") if local_ok else value, step, sync))

    # -- internals -----------------------------------------------------------------------
    def _copy_async(self) -> None:
        state = torch.cat([self._first.double(), self._value.double()])
        if state.device.type != "cuda":  # CPU: reading is free
            self._host, self._event = state.clone(), _Done()
            return
        if self._host is None:
            self._host = torch.empty(4, dtype=torch.float64, pin_memory=True)
        self._host.copy_(state, non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record()

    @staticmethod
    def _read(state: torch.Tensor) -> tuple[tuple[int, str] | None, float]:
        first = state[:2].tolist()
        bad = [(int(s), who) for s, who in zip(first, ("discriminator", "generator")) if s >= 0]
        if not bad:
            return None, 0.0
        step, who = min(bad)
        return (step, who), float(state[2 + (who == "generator")])

    def _message(self, module, who: str, step: int, value: float, now: int, sync: bool = False) -> str:
        if sync:  # the batch that just ran
            return (f"non-finite {who} loss ({value}) at generator step {step} (optimizer step "
                    f"{module.global_step}); the run stopped and this step's weights were not saved, so the "
                    f"last checkpoint holds the last good state. {HINT}")
        return (f"non-finite {who} loss ({value}) at generator step {step} (noticed at generator step "
                f"{now}; model.speed.finite_check_every={self.every}); the "
                f"run stopped and no checkpoint was written after generator step {step - 1}, so the last "
                f"checkpoint holds the last good state. {HINT}")


class _Done:
    """Stands in for a CUDA event when the copy was synchronous (CPU tensors)."""

    def query(self) -> bool:
        return True
