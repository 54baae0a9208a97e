"""The benchmark's pure summaries: medians, ranges, ratios, floor multiples."""

from __future__ import annotations

from typing import Any

import pytest
from bench.stats import Summary, floor_multiple, ratio, summarize, summarize_cell


def test_summarize_skips_failed_runs_and_takes_the_median() -> None:
    assert summarize([3.0, None, 1.0, 2.0]) == Summary(n=3, median=2.0, min=1.0, max=3.0)
    assert summarize([4.0, 1.0]) == Summary(n=2, median=2.5, min=1.0, max=4.0)
    assert summarize([None, None]) is None


def test_ratio_of_medians_and_floor_multiple() -> None:
    a = Summary(n=3, median=110.0, min=100.0, max=120.0)
    b = Summary(n=3, median=100.0, min=90.0, max=130.0)
    assert ratio(a, b) == pytest.approx(1.1)
    assert ratio(a, None) is None
    assert ratio(a, Summary(n=1, median=0.0, min=0.0, max=0.0)) is None
    # 1 GiB at 1 GiB/s takes 1 s: 2500 ms is 2.5 times the floor.
    assert floor_multiple(2500.0, 1 << 30, float(1 << 30)) == pytest.approx(2.5)
    assert floor_multiple(None, 1 << 30, 1e9) is None
    assert floor_multiple(100.0, 1 << 30, None) is None


def _run(tool: str, rep: int, down: float | None, total: float | None) -> dict[str, Any]:
    ok = down is not None
    return {"tool": tool, "rep": rep, "ok": ok, "error": None if ok else "boom",
            "downtime_ms": down, "total_ms": total, "rss_bytes": 256 << 20,
            "bytes_moved": 256 << 20,
            "details": {"report_total_ms": total, "dump_ms": 10.0} if ok else {}}


def test_cell_summary_ratios_goals_and_errors() -> None:
    runs = [_run("ferryman", 1, 100.0, 1000.0), _run("ferryman", 2, 104.0, 1100.0),
            _run("ferryman", 3, None, None),
            _run("by-hand", 1, 100.0, 1000.0), _run("by-hand", 2, 100.0, 800.0),
            _run("by-hand", 3, 100.0, 900.0)]
    s = summarize_cell(runs, tcp_bps=float(256 << 20), memcpy_bps=None)
    assert s["tools"]["ferryman"]["downtime_ms"] == {"n": 2, "median": 102.0, "min": 100.0,
                                                      "max": 104.0}
    assert s["ratios"]["downtime"] == pytest.approx(1.02)
    assert s["ratios"]["total"] == pytest.approx(1050 / 900)
    assert s["goals"] == {"downtime": True, "total": True}
    assert s["n_ok"] == {"ferryman": 2, "by-hand": 3}
    assert s["errors"] == ["ferryman run 3: boom"]
    assert s["floors_ms"]["tcp"] == pytest.approx(1000.0)
    assert s["multiples"]["by-hand"]["total_x_tcp"] == pytest.approx(0.9)
    assert s["multiples"]["by-hand"]["total_x_memcpy"] is None
