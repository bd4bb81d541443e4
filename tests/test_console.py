"""ganlab.console.user_errors: user errors become one logged message and an exit code, everything
else passes through (the CLI side is in tests/test_cli.py)."""

import logging

import pytest
from hydra.errors import InstantiationException

from ganlab.checkpoints import CheckpointError
from ganlab.console import user_errors
from ganlab.data.errors import layout_error


@user_errors()
def fails_with(err):
    raise err


def wrapped_by_hydra(cause):
    try:
        raise cause
    except Exception as c:
        err = InstantiationException(f"Error in call to target 'x':\n{c!r}")
        err.__cause__ = c
        return err


@pytest.mark.parametrize("err, code, message", [
    (layout_error("data root does not exist", "/nowhere"), 1, "data root does not exist: /nowhere"),
    (CheckpointError("checkpoint /x.ckpt is damaged"), 2, "checkpoint /x.ckpt is damaged"),
    (wrapped_by_hydra(CheckpointError("checkpoint /y.ckpt: no such file")), 2, "checkpoint /y.ckpt: no such file"),
    (wrapped_by_hydra(ValueError("n_critic must be >= 1, got 0")), 1, "ValueError('n_critic must be >= 1, got 0')"),
])
def test_user_error_is_one_message_and_an_exit_code(err, code, message, caplog, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with caplog.at_level(logging.ERROR, logger="ganlab.console"), pytest.raises(SystemExit) as stop:
        fails_with(err)
    assert stop.value.code == code
    assert [r.levelno for r in caplog.records] == [logging.ERROR] and message in caplog.records[0].getMessage()


def test_other_errors_pass_through():
    with pytest.raises(KeyError):
        fails_with(KeyError("a bug"))


def test_lightning_tips_are_dropped_and_its_other_lines_kept(caplog):
    from ganlab.console import quiet_library_noise

    quiet_library_noise()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    logger.addHandler(caplog.handler)  # Lightning's loggers may not propagate to the root
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("💡 Tip: For seamless cloud uploads and versioning, try installing "
                        "[litmodels](https://pypi.org/project/litmodels/) to enable LitModelCheckpoint")
            logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
            logger.info("GPU available: False, used: False")
    finally:
        logger.removeHandler(caplog.handler)
    # (a record may arrive twice: through this handler and, propagated, through the root's)
    assert {r.getMessage() for r in caplog.records} == {"GPU available: False, used: False"}
