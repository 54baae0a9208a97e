"""The Markdown report: memory tables, the S3 (echo) and S4 (tree) sections, the notes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench.report import main as report_main
from bench.report import markdown
from bench.stats import summarize_cell


def _run(tool: str, down: float, total: float, **details: float) -> dict[str, Any]:
    return {"tool": tool, "rep": 1, "ok": True, "error": None, "downtime_ms": down,
            "total_ms": total, "memory_complete_ms": None, "rss_bytes": 80 << 20,
            "bytes_moved": 70 << 20, "details": details}


def _cell(mode: str, label: str, runs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"mode": mode, "label": label, "kind": "memory" if mode == "cold" else mode,
            "size_mib": extra.pop("size_mib", None), "runs": runs,
            "summary": summarize_cell(runs, None, None, mode), **extra}


def _result(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {"started": "now", "runs": 1, "floors": {}, "errors": [], "cells": cells,
            "environment": {"kernel": "k", "criu": "c", "service": "10.77.0.100/24",
                            "garp": "arping"}}


def test_echo_and_tree_sections_without_memory_cells() -> None:
    echo = _cell("echo", "cold", [
        _run("ferryman", 340.0, 1000.0, client_gap_end_ms=1350.0, report_downtime_ms=378.0),
        _run("by-hand", 280.0, 300.0, addr_del_ms=3.0, addr_add_ms=2.5, garp_start_ms=0.3,
             client_gap_end_ms=375.0),
        {**_run("by-hand-tls", 0, 0), "ok": False, "error": "boom"}], migration="cold")
    trees = [_cell("tree", f"{n} processes", [
        _run("ferryman", 450.0 * n, 1300.0, freezing_time_ms=0.05 * n, frozen_time_ms=400.0),
        _run("by-hand", 360.0 * n, 400.0, freezing_time_ms=0.06 * n, frozen_time_ms=300.0)],
        procs=n, size_mib=64) for n in (1, 100)]
    md = markdown(_result([echo, *trees]))
    assert "## S3: TCP echo server" in md
    assert "| cold | 1/1 1/1 0/1 | 340 | 280 | - | 1.21x / - | 1000 | 300 | - |" in md
    assert "| 3 / 2 / 0 |" in md  # by hand's ip addr del / add / ARP start
    assert "## S4: process trees" in md
    assert "| 100 | 1/1 1/1 0/0 | 80 | 45000 | 36000 | - | 1.25x / - | 5.0 | 6.0 | - |" in md
    assert "| downtime | 100.00x | 100.00x | - |" in md  # growth from 1 to 100 processes
    assert "S3 by hand needed" in md
    assert "iputils arping -U -c 2" in md
    assert "- echo cold: by-hand-tls run 1: boom" in md
    assert "## S1" not in md  # the memory tables only with memory cells
    assert "memory complete = post-copy only" not in md


def test_runc_echo_section_has_ferryman_and_by_hand_only_and_its_goals() -> None:
    def box(migration: str, fm_gap: float) -> dict[str, Any]:
        fm = _run("ferryman", fm_gap, 1200.0, client_gap_end_ms=1300.0,
                  report_downtime_ms=310.0)
        bh = _run("by-hand", 550.0, 1100.0, addr_del_ms=2.0, addr_add_ms=3.0,
                  garp_start_ms=0.4, client_gap_end_ms=720.0, dump_ms=220.0, copy_ms=180.0,
                  restore_ms=170.0)
        if migration == "postcopy":
            fm["memory_complete_ms"], bh["memory_complete_ms"] = 180.0, 330.0
        return _cell("runc-echo", migration, [fm, bh], migration=migration)

    md = markdown(_result([box("cold", 300.0), box("postcopy", 150.0)]))
    assert "## S3, container: the echo server as a runc container" in md
    assert "ratio vs by hand)" in md
    assert "by hand TLS" not in md.split("## S3, container")[1].split("\n\n")[1]
    assert ("| cold | 1/1 1/1 | 300 | 550 | 0.55x | 1200 | 1100 | 1.09x | 310 | 1300 | 720 | "
            "2 / 3 / 0 |") in md
    assert "| 180 | 330 | 220 / 180 / 170 |" in md  # memory complete; by hand's own steps
    assert "| container cold: client gap ≤ 1.0x by hand |  | 0.55x ✓ |" in md
    assert "| container postcopy: client gap ≤ 200 ms | 150 ms ✓ | (550 ms own) |" in md
    assert "runc checkpoint --lazy-pages --page-server" in md  # the notes say what by hand ran
    header = next(ln for ln in md.splitlines() if ln.startswith("| migration | ok | client"))
    rule = md.splitlines()[md.splitlines().index(header) + 1]
    assert rule.count("---") == header.count("|") - 1


def test_memory_cells_keep_their_tables_and_no_s3_s4_sections() -> None:
    fm, bh = _run("ferryman", 946.0, 1728.0), _run("by-hand", 661.0, 693.0)
    fm["details"]["moved_bytes"] = 88 << 20  # 1.1 x the RSS of 80 MiB
    bh["details"]["moved_bytes"] = 84 << 20
    runs = [fm, bh]
    cold = {**_cell("cold", "256 MiB, 1000 pages/s", runs, size_mib=256, dirty_rate=1000),
            "summary": summarize_cell(runs, float(80 << 20), float(800 << 20), "cold")}
    md = markdown(_result([cold]))
    assert "| cold | 256 MiB | 1000 | 80 | 946 | 661 | - | 1.43x / - | 1728 | 693 |" in md
    # moved / RSS; floors (80 MiB at 80 MiB/s and 800 MiB/s); total as multiples of them
    assert ("| cold | 256 MiB | 1000 | 1.10x / 1.05x / - | 1000 / 100 | 1.7x / 0.7x / - | "
            "17.3x / 6.9x / - | 0.9x / 0.7x / - |") in md
    assert "## S1 details" in md
    assert "## S3" not in md
    assert "## S4" not in md
    assert "S3 by hand needed" not in md


def test_redis_section_shows_gap_throughput_and_floor_multiples() -> None:
    fm = _run("ferryman", 300.0, 2000.0, client_gap_end_ms=1300.0, rps_before=210e3,
              rps_during=100e3, rps_after=225e3, rb_get_rps_before=600e3,
              rb_get_rps_after=650e3)
    bh = _run("by-hand", 150.0, 2200.0, client_gap_end_ms=210.0, rps_before=230e3,
              rps_during=57e3, rps_after=227e3, rb_get_rps_before=535e3,
              rb_get_rps_after=623e3)
    runs = [fm, bh]
    redis = {**_cell("redis", "postcopy", runs, migration="postcopy"),
             "summary": summarize_cell(runs, float(80 << 20), float(800 << 20), "redis")}
    md = markdown(_result([redis]))
    assert "## S2: redis-server" in md
    assert ("| postcopy | 1/1 1/1 0/0 | 80 | 300 | 150 | - | 2.00x / - | 2000 | 2200 | - | "
            "0.91x / - | 1300 | 210 | - | 2.0x / 2.2x / -; 20.0x / 22.0x / - |") in md
    assert "| postcopy | 210 / 100 / 225 | 230 / 57 / 227 | - / - / - | 600 / 650 | 535 / 623 |" \
        in md
    assert "S2 (redis): redis-server (Debian package" in md
    assert "## S1" not in md


def test_a_results_file_renders_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    cold = _cell("cold", "256 MiB, 0 pages/s", [_run("ferryman", 946.0, 1728.0)],
                 size_mib=256, dirty_rate=0)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_result([cold])))
    assert report_main([str(path)]) == 0
    assert "| cold | 256 MiB | 0 | 80 | 946 |" in capsys.readouterr().out
    path.write_text("{}")
    assert report_main([str(path)]) == 1
    assert "cannot render" in capsys.readouterr().err


def test_podman_section_compares_with_podmans_own_and_splits_ferrymans_gap() -> None:
    phases = [{"phase": "FREEZING", "start_ms": 0.0, "duration_ms": 150.0},
              {"phase": "DUMPED", "start_ms": 150.0, "duration_ms": 4.0},
              {"phase": "TRANSFERRING", "start_ms": 154.0, "duration_ms": 10.0},
              {"phase": "AWAIT_RESTORE", "start_ms": 164.0, "duration_ms": 320.0}]
    fm = _run("ferryman", 500.0, 2000.0, report_downtime_ms=480.0)
    fm["details"]["phases"] = phases
    bh = _run("by-hand", 1000.0, 1100.0, dump_ms=400.0, copy_ms=5.0, hold_ms=4.0,
              restore_ms=500.0, unhold_ms=3.0, archive_bytes=float(3 << 20))
    cell = _cell("podman-redis", "cold", [fm, bh], migration="cold")
    md = markdown(_result([cell]))
    assert "## S2, Podman: redis-server" in md
    assert ("| cold | 1/1 1/1 | 500 | 1000 | 0.50x ✗ | 2000 | 1100 | 480 | "
            "150 / 14 / 320 / 20 | 400 / 5 / 4 / 500 / 3 / 3.00 |") in md
    assert ("| podman-redis (ferryman cold): client gap ≤ 0.3x Podman's own export/import "
            "| 0.50x ✗ |") in md
    assert "podman container checkpoint --export ARCHIVE --tcp-established NAME" in md
    header = next(ln for ln in md.splitlines() if ln.startswith("| ferryman mode |"))
    rule = md.splitlines()[md.splitlines().index(header) + 1]
    assert rule.count("---") == header.count("|") - 1


def test_the_header_says_how_fast_free_memory_became_resident() -> None:
    result = _result([])
    assert "first touch" not in markdown(result)  # results from before it was measured
    result["environment"].update(first_touch_start=0.36e9, first_touch_end=2.4e9)
    assert "first touch of 128 MiB of free memory 0.36 -> 2.40 GB/s" in markdown(result)
