"""Stop signals: SIGTERM, SIGINT (Ctrl-C), SIGUSR1 (SLURM ``--signal``) and SIGUSR2 (submitit's
pre-emption / time-limit signal) end a job cleanly instead of killing it mid-write.

Two modes, chosen by the code that is running:

* *immediate* (the default, e.g. a cache build, ``generate``, an in-training metrics
  evaluation): the handler raises :class:`StopRequested` right away, so ``finally`` blocks
  remove temp files and the job exits within moments;
* *deferred* (inside :func:`deferred`, i.e. the training loop): the handler only records the
  signal; the training checkpoint callback saves ``last.ckpt`` at the end of the current step
  and stops the trainer. A second signal while deferred stops at once.

:func:`finish` then hands the signal to the handler that was installed before ganlab's (e.g.
submitit's requeue) or exits with ``128 + signum``, the shell's convention.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2") if hasattr(signal, n))


class StopRequested(BaseException):
    """Raised (immediate mode) when a stop signal arrives; a ``BaseException`` like ``KeyboardInterrupt``,
    so ``except Exception`` blocks do not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class _State:
    signum: int | None = None
    deferred = 0
    previous: dict[int, Any] = {}


_state = _State()


def _handler(signum: int, frame: Any) -> None:
    first = _state.signum is None
    if first:
        _state.signum = signum
    if _state.deferred > 0 and first:
        log.warning("received %s: saving a checkpoint at the end of this step, then stopping "
                    "(send it again to stop at once)", signal.Signals(signum).name)
        return
    raise StopRequested(signum)


def install() -> None:
    """Route the stop signals to ganlab (main thread only; a no-op elsewhere). Idempotent."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in STOP_SIGNALS:
        current = signal.getsignal(s)
        if current is _handler:
            continue
        _state.previous.setdefault(s, current)  # re-installing keeps the original one to chain to
        signal.signal(s, _handler)


def uninstall() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for s, prev in list(_state.previous.items()):
        if signal.getsignal(s) is _handler:
            signal.signal(s, prev if prev is not None else signal.SIG_DFL)
    _state.previous.clear()


def reset() -> None:
    """Forget a received signal (tests, and a new job in the same process)."""
    _state.signum = None
    _state.deferred = 0


def requested() -> int | None:
    """The first stop signal received, if any."""
    return _state.signum


def enter_deferred() -> None:
    _state.deferred += 1


def leave_deferred() -> None:
    _state.deferred = max(0, _state.deferred - 1)


@contextlib.contextmanager
def deferred():
    """Signals only set the flag while inside (the training loop checks it after every step)."""
    _state.deferred += 1
    try:
        yield
    finally:
        _state.deferred -= 1


@contextlib.contextmanager
def immediate():
    """Signals raise :class:`StopRequested` while inside, even within :func:`deferred`
    (a long evaluation inside a training step must not keep a pre-empted job alive)."""
    saved, _state.deferred = _state.deferred, 0
    try:
        if _state.signum is not None:
            raise StopRequested(_state.signum)
        yield
    finally:
        _state.deferred = saved


def finish(signum: int) -> None:
    """After the job saved its state: call the previously installed handler (submitit's requeue,
    for instance) if it is a Python function, then exit with ``128 + signum``."""
    prev = _state.previous.get(signum)
    uninstall()
    if callable(prev) and prev not in (signal.default_int_handler,):
        prev(signum, None)
    sys.exit(128 + int(signum))


__all__ = ["STOP_SIGNALS", "StopRequested", "deferred", "enter_deferred", "leave_deferred", "finish", "immediate", "install", "requested", "reset",
           "uninstall"]
