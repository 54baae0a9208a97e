"""agent/steps.py and the summary's line for it: each step before the freeze, in ms."""

from __future__ import annotations

import time

import pytest

from ferryman.agent.steps import timed
from ferryman.report.summary import step_line


def test_timed_adds_up_and_records_on_error() -> None:
    steps: dict[str, float] = {}
    with timed(steps, "dry_run"):
        time.sleep(0.01)
    first = steps["dry_run"]
    assert first >= 10
    with pytest.raises(RuntimeError), timed(steps, "dry_run"):
        raise RuntimeError
    assert steps["dry_run"] >= first


def test_step_line_in_running_order() -> None:
    line = step_line({"plan_ready": 95.2, "dry_run": 58.1, "hello_facts": 112.9,
                      "zzz_new": 1.0})
    assert line == "criu facts 113 ms, dry run 58 ms, plan→ready 95 ms, zzz_new 1.0 ms"
