"""What a user sees on the terminal when running a ganlab entry point.

* :func:`quiet_library_noise`: drops the library messages a ganlab user cannot act on, each one
  matched by its text and origin (never a blanket filter);
* :func:`route_logs_to_run_folder`: Lightning's log records (and Python warnings) go through the
  handlers Hydra configured, so the run folder's ``<task>.log`` holds the whole run's log;
* :func:`user_errors`: a user mistake (data path or layout, option value, unreadable checkpoint,
  no disk space) prints ganlab's one message and exits non-zero; ``HYDRA_FULL_ERROR=1`` adds the
  traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
import warnings

log = logging.getLogger(__name__)

FULL_ERROR_HINT = "(HYDRA_FULL_ERROR=1 shows the full traceback)"


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(f in message for f in self.fragments)


_DROP = _DropMessages(
    # an advertisement for Lightning's cloud logger, printed by every Trainer
    "try installing [litlogger]",
    # the same for its model registry, printed when no checkpoint callback is configured (callbacks=none)
    "try installing [litmodels]",
    # ganlab configures RichModelSummary itself, so Lightning skipping its default one is expected
    "Trainer already configured with model summary callbacks",
    # counts optimizer steps (n_critic + 1 per generator step); ganlab's last line says what ran
    "`Trainer.fit` stopped: `max_steps=",
)


def quiet_library_noise() -> None:
    """Install the filters (idempotent)."""
    # Lightning's own _pytree helper uses a torch API that torch deprecated; nothing to do for a user
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            module=r"lightning\.pytorch\.utilities\._pytree")
    # ganlab steps its optimizers by hand and checkpoints the state *after* the step on purpose
    # (that is what resume continues from; tests/test_resume.py); Lightning's advice does not apply
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization",
                            module=r"lightning\.pytorch\.callbacks\.model_checkpoint")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _DROP not in logger.filters:
            logger.addFilter(_DROP)


def route_logs_to_run_folder() -> None:
    """Call inside a ``@hydra.main`` function. Lightning attaches its own stderr handler when it is
    imported before Hydra configures logging (always, for ``python -m ganlab.train``) and stops
    propagation, so nothing of it reached the log file; hand its records to the root handlers."""
    root = logging.getLogger()
    if not root.handlers:  # not under Hydra's logging: keep Lightning's own handler
        return
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    logging.captureWarnings(True)  # warnings go to the console handler and into the log file


class ConsoleFormatter(logging.Formatter):
    """Terminal format: the message alone, ``WARNING:`` / ``ERROR:`` in front where it applies."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"{record.levelname}: {text}" if record.levelno >= logging.WARNING else text


def _user_error_code(err: BaseException) -> tuple[int, str] | None:
    """(exit code, message) for a user error, None for anything else."""
    from hydra.errors import InstantiationException

    from ganlab.checkpoints import CheckpointError
    from ganlab.data.build import CacheSpaceError
    from ganlab.data.errors import DataLayoutError

    cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ is not None else err
    if isinstance(cause, (CheckpointError, CacheSpaceError)):
        return 2, str(cause)
    if isinstance(cause, DataLayoutError):
        return 1, str(cause)
    if isinstance(err, InstantiationException):  # a bad option value: Hydra's message names target and key
        return 1, f"{err}\n{FULL_ERROR_HINT}"
    return None


@contextlib.contextmanager
def user_errors():
    """Turn a user error raised inside into ganlab's message on stderr (through logging, so it is
    in the log file too) and ``sys.exit(code)``: 2 for a checkpoint or disk-space problem, 1 for data
    or option errors. Other exceptions pass through unchanged."""
    try:
        yield
    except Exception as err:
        found = _user_error_code(err)
        if found is None:
            raise
        code, message = found
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            traceback.print_exc()
        log.error("%s", message)
        sys.exit(code)


__all__ = ["ConsoleFormatter", "FULL_ERROR_HINT", "quiet_library_noise", "route_logs_to_run_folder", "user_errors"]
