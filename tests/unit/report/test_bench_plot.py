"""bench.plot: benchmark results as downtime/total against RSS, tolerant of gaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench.plot import collect, main

MIB = 1 << 20


def _run(tool: str, down: float | None, total: float | None = 100.0, *, ok: bool = True,
         rss: int | None = 300 * MIB) -> dict[str, Any]:
    return {"tool": tool, "ok": ok, "downtime_ms": down, "total_ms": total, "rss_bytes": rss}


RESULTS: dict[str, Any] = {
    "started": "2026-11-27-130305", "runs": 2,
    "environment": {"kernel": "6.18", "criu": "Version: 4.2.1", "commit": "abc"},
    "cells": [
        {"mode": "cold", "size_mib": 256, "runs": [
            _run("ferryman", 1000.0), _run("ferryman", 1200.0),
            _run("by-hand", 600.0), _run("by-hand", None, None, ok=False)]},
        {"mode": "cold", "size_mib": 1024, "runs": [
            _run("ferryman", 6000.0, rss=1040 * MIB), _run("by-hand", 2500.0, rss=None)]},
        {"mode": "postcopy", "size_mib": 256, "runs": [_run("ferryman", 300.0, None)]},
        {"mode": "postcopy", "size_mib": 1024},  # interrupted: no runs
        "garbage",
    ],
}


def test_collect_groups_runs_and_counts_the_ones_left_out() -> None:
    series, skipped = collect(RESULTS)
    assert [(s.mode, s.tool) for s in series] == [
        ("cold", "ferryman"), ("cold", "by-hand"), ("postcopy", "ferryman")]
    assert skipped == 1
    cold_fm, cold_bh, post_fm = series
    assert cold_fm.medians("downtime_ms") == [(300.0, 1100.0), (1040.0, 6000.0)]
    assert cold_bh.medians("downtime_ms") == [(300.0, 600.0), (1024.0, 2500.0)]  # size fallback
    assert post_fm.medians("total_ms") == []
    assert collect({}) == ([], 0)


def test_collect_takes_one_dirty_rate_cells_without_one_are_idle() -> None:
    dirty = {"mode": "cold", "size_mib": 256, "dirty_rate": 10000,
             "runs": [_run("ferryman", 5000.0)]}
    results = {**RESULTS, "cells": [*RESULTS["cells"], dirty]}
    idle, _ = collect(results)
    assert idle[0].medians("downtime_ms") == [(300.0, 1100.0), (1040.0, 6000.0)]
    series, skipped = collect(results, rate=10000)
    assert [(s.mode, s.tool, s.medians("downtime_ms")) for s in series] == [
        ("cold", "ferryman", [(300.0, 5000.0)])]
    assert skipped == 0


def test_main_writes_a_png_next_to_the_results(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(RESULTS))
    assert main([str(path)]) == 0
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")
    assert main([str(path), "-o", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").stat().st_size > 10_000


def test_main_refuses_what_is_not_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"migration_id": "x"}))
    assert main([str(path)]) == 1
    assert "no benchmark cells" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 1
