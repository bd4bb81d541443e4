"""The load test script (experiments/humaneval/load_test.py): 0 lost or duplicated answers.

Default suite: 8 raters x 20 answers (a few seconds); ``-m slow``: the issue's 50 x 100.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "humaneval" / "load_test.py"


def _load():
    spec = importlib.util.spec_from_file_location("humaneval_load_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check(res: dict, raters: int, answers: int) -> None:
    assert res["errors"] == []
    assert res["acknowledged"] == res["stored"] == raters * answers
    assert res["lost"] == 0 and res["duplicated"] == 0 and res["raters_in_db"] == raters
    assert 0 < res["answer_latency_ms"]["p50"] <= res["answer_latency_ms"]["p99"]


def test_concurrent_raters_lose_nothing(tmp_path):
    _check(_load().run_load(8, 20, time_limit=120, workdir=str(tmp_path)), 8, 20)


@pytest.mark.slow
def test_fifty_raters_times_hundred_answers(tmp_path):
    _check(_load().run_load(50, 100, time_limit=600, workdir=str(tmp_path)), 50, 100)
