"""The benchmark's pure summaries: medians, ranges, ratios, floor multiples."""

from __future__ import annotations

from typing import Any

import pytest
from bench.stats import (
    Summary,
    criu_ms,
    floor_multiple,
    goal_table,
    growth,
    ratio,
    summarize,
    summarize_cell,
)


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


def _run(tool: str, rep: int, down: float | None, total: float | None,
         complete: float | None = None) -> dict[str, Any]:
    ok = down is not None
    return {"tool": tool, "rep": rep, "ok": ok, "error": None if ok else "boom",
            "downtime_ms": down, "total_ms": total, "memory_complete_ms": complete,
            "rss_bytes": 256 << 20, "bytes_moved": 256 << 20,
            "details": {"report_total_ms": total, "dump_ms": 10.0} if ok else {}}


def test_cell_summary_ratios_goals_and_errors() -> None:
    runs = [_run("ferryman", 1, 100.0, 1000.0), _run("ferryman", 2, 104.0, 1100.0),
            _run("ferryman", 3, None, None),
            _run("by-hand", 1, 100.0, 1000.0), _run("by-hand", 2, 100.0, 800.0),
            _run("by-hand", 3, 100.0, 900.0),
            _run("by-hand-tls", 1, 90.0, 2000.0), _run("by-hand-tls", 2, 95.0, 2100.0)]
    s = summarize_cell(runs, tcp_bps=float(256 << 20), memcpy_bps=None, mode="cold")
    assert s["tools"]["ferryman"]["downtime_ms"] == {"n": 2, "median": 102.0, "min": 100.0,
                                                      "max": 104.0}
    assert s["ratios"]["by-hand"]["downtime"] == pytest.approx(1.02)
    assert s["ratios"]["by-hand"]["total"] == pytest.approx(1050 / 900)
    assert s["ratios"]["by-hand-tls"]["total"] == pytest.approx(1050 / 2050)
    assert s["ratios"]["by-hand"]["memory_complete"] is None  # cold: no post-copy tail
    assert s["goals"]["by-hand"] == {"downtime": True, "total": True}
    assert s["goals"]["by-hand-tls"] == {"downtime": False, "total": True}
    assert s["n_ok"] == {"ferryman": 2, "by-hand": 3, "by-hand-tls": 2}
    assert s["errors"] == ["ferryman run 3: boom"]
    assert s["floors_ms"]["tcp"] == pytest.approx(1000.0)
    assert s["multiples"]["by-hand"]["total_x_tcp"] == pytest.approx(0.9)
    assert s["multiples"]["by-hand"]["total_x_memcpy"] is None


def test_postcopy_cell_has_only_the_downtime_goal_and_compares_memory_complete() -> None:
    runs = [_run("ferryman", 1, 110.0, 3000.0, 1500.0),
            _run("by-hand", 1, 100.0, 2000.0, 1000.0),
            _run("by-hand-tls", 1, 120.0, 4000.0, 3000.0)]
    s = summarize_cell(runs, None, None, mode="postcopy")
    assert s["goals"] == {"by-hand": {"downtime": True}, "by-hand-tls": {"downtime": True}}
    assert s["ratios"]["by-hand"]["memory_complete"] == pytest.approx(1.5)
    assert s["ratios"]["by-hand-tls"]["memory_complete"] == pytest.approx(0.5)


def _cell(mode: str, size: int, down: dict[str, float]) -> dict[str, Any]:
    runs = [_run(tool, 1, d, 10 * d, d if mode == "postcopy" else None)
            for tool, d in down.items()]
    return {"mode": mode, "size_mib": size, "runs": runs,
            "summary": summarize_cell(runs, None, None, mode)}


def test_goal_table_marks_each_goal_against_each_baseline() -> None:
    cells = [_cell("cold", 1024, {"ferryman": 2000.0, "by-hand": 1900.0, "by-hand-tls": 2100.0}),
             _cell("postcopy", 256, {"ferryman": 100.0, "by-hand": 100.0, "by-hand-tls": 90.0}),
             _cell("postcopy", 1024, {"ferryman": 120.0, "by-hand": 150.0,
                                      "by-hand-tls": 200.0}),
             _cell("postcopy", 4096, {"ferryman": 140.0, "by-hand": 200.0,
                                      "by-hand-tls": 300.0})]
    rows = {r["id"]: r for r in goal_table(cells)}
    assert list(rows) == ["cold-1024-downtime", "cold-1024-total", "postcopy-256-downtime",
                          "postcopy-1024-downtime", "postcopy-4096-downtime",
                          "postcopy-scaling", "postcopy-vs-cold"]
    cold = rows["cold-1024-downtime"]["values"]
    assert cold["by-hand"]["value"] == pytest.approx(2000 / 1900)
    assert cold["by-hand"]["ok"] is False  # 1.053 > 1.05
    assert cold["by-hand-tls"]["ok"] is True
    pc256 = rows["postcopy-256-downtime"]["values"]
    assert (pc256["by-hand"]["ok"], pc256["by-hand-tls"]["ok"]) == (True, False)
    scaling = rows["postcopy-scaling"]["values"]
    assert scaling["ferryman"] == {"value": pytest.approx(1.4), "ok": True, "reference": False}
    # by hand's own scaling is shown for reference, never marked
    assert scaling["by-hand-tls"] == {"value": pytest.approx(300 / 90), "ok": None,
                                      "reference": True}
    vs_cold = rows["postcopy-vs-cold"]["values"]
    assert vs_cold["ferryman"]["value"] == pytest.approx(120 / 2000)
    assert vs_cold["by-hand"]["value"] == pytest.approx(120 / 1900)
    assert all(v["ok"] is True for v in vs_cold.values())


def test_container_goals_compare_with_plain_by_hand_and_bound_the_postcopy_gap() -> None:
    def box(migration: str, down: dict[str, float]) -> dict[str, Any]:
        return {**_cell("runc-echo", 0, down), "size_mib": None, "migration": migration,
                "label": migration}

    cells = [box("cold", {"ferryman": 300.0, "by-hand": 500.0}),
             box("postcopy", {"ferryman": 320.0, "by-hand": 300.0})]
    rows = {r["id"]: r for r in goal_table(cells)}
    assert list(rows) == ["runc-echo-cold-gap", "runc-echo-postcopy-gap",
                          "runc-echo-postcopy-gap-ms"]
    assert rows["runc-echo-cold-gap"]["values"] == {
        "by-hand": {"value": pytest.approx(0.6), "ok": True, "reference": False}}
    assert rows["runc-echo-postcopy-gap"]["values"]["by-hand"]["ok"] is False  # 1.07 > 1.0
    gap = rows["runc-echo-postcopy-gap-ms"]
    assert gap["unit"] == "ms"
    assert gap["values"]["ferryman"] == {"value": 320.0, "ok": False, "reference": False}
    assert gap["values"]["by-hand"] == {"value": 300.0, "ok": None, "reference": True}
    assert rows["runc-echo-cold-gap"]["goal"] == "container cold: client gap ≤ 1.0x by hand"


def test_the_process_echo_server_has_the_postcopy_gap_goal_only() -> None:
    def echo(migration: str, down: dict[str, float]) -> dict[str, Any]:
        return {**_cell("echo", 0, down), "size_mib": None, "migration": migration,
                "label": migration}

    rows = {r["id"]: r for r in goal_table([echo("cold", {"ferryman": 80.0}),
                                            echo("postcopy", {"ferryman": 96.0,
                                                              "by-hand": 97.0})])}
    assert list(rows) == ["echo-postcopy-gap-ms"]
    gap = rows["echo-postcopy-gap-ms"]
    assert gap["goal"] == "process postcopy: client gap ≤ 200 ms"
    assert gap["values"]["ferryman"] == {"value": 96.0, "ok": True, "reference": False}


def test_goal_table_without_postcopy_has_no_cross_rows_and_unknown_is_none() -> None:
    cells = [_cell("cold", 256, {"ferryman": 100.0})]
    rows = goal_table(cells)
    assert [r["id"] for r in rows] == ["cold-256-downtime", "cold-256-total"]
    assert rows[0]["values"]["by-hand"] == {"value": None, "ok": None, "reference": False}


def test_criu_ms_converts_the_dump_timings_and_skips_the_rest() -> None:
    stats = {"freezing_time": 4943, "frozen_time": 3108006, "memdump_time": 1895868,
             "pages_written": 1000, "memwrite_time": True}
    assert criu_ms(stats) == {"freezing_time_ms": pytest.approx(4.943),
                              "frozen_time_ms": pytest.approx(3108.006),
                              "memdump_time_ms": pytest.approx(1895.868)}
    assert criu_ms({}) == {}
    assert criu_ms(None) == {}


def _tree_cell(procs: int, down: dict[str, float], freeze: dict[str, float]) -> dict[str, Any]:
    runs = []
    for tool, d in down.items():
        r = _run(tool, 1, d, 2 * d)
        r["details"]["freezing_time_ms"] = freeze[tool]
        runs.append(r)
    return {"mode": "tree", "label": f"{procs} processes", "size_mib": 64, "procs": procs,
            "runs": runs, "summary": summarize_cell(runs, None, None, "tree")}


def test_tree_cells_compare_freezing_time_and_have_no_goals() -> None:
    c = _tree_cell(10, {"ferryman": 800.0, "by-hand": 500.0, "by-hand-tls": 800.0},
                   {"ferryman": 0.6, "by-hand": 0.5, "by-hand-tls": 0.6})
    s = c["summary"]
    assert s["tools"]["by-hand"]["freezing_time_ms"]["median"] == pytest.approx(0.5)
    assert s["ratios"]["by-hand"]["freezing_time"] == pytest.approx(1.2)
    assert s["goals"] == {"by-hand": {}, "by-hand-tls": {}}
    assert goal_table([c]) == []


def test_growth_is_most_processes_over_fewest_per_tool() -> None:
    cells = [_tree_cell(100, {"ferryman": 3000.0, "by-hand": 1800.0, "by-hand-tls": 3300.0},
                        {"ferryman": 5.0, "by-hand": 6.0, "by-hand-tls": 5.5}),
             _tree_cell(1, {"ferryman": 450.0, "by-hand": 360.0, "by-hand-tls": 450.0},
                        {"ferryman": 0.1, "by-hand": 0.2, "by-hand-tls": 0.1}),
             _tree_cell(10, {"ferryman": 850.0, "by-hand": 520.0}, {"ferryman": 0.6,
                                                                    "by-hand": 0.6}),
             _cell("cold", 256, {"ferryman": 1.0})]  # other modes do not count
    g = growth(cells, "tree", "downtime_ms")
    assert (g["from"], g["to"]) == (1, 100)
    assert g["values"]["ferryman"] == pytest.approx(3000 / 450)
    assert g["values"]["by-hand"] == pytest.approx(5.0)
    freeze = growth(cells, "tree", "freezing_time_ms")
    assert freeze["values"]["by-hand"] == pytest.approx(30.0)
    assert growth(cells[:1] + cells[3:], "tree") == {}  # one tree cell: nothing to compare
    failed = [_tree_cell(1, {"ferryman": 450.0}, {"ferryman": 0.1}),
              _tree_cell(100, {"by-hand": 1800.0}, {"by-hand": 6.0})]
    assert growth(failed)["values"] == {"ferryman": None, "by-hand": None, "by-hand-tls": None}


def test_moved_bytes_over_rss_per_tool() -> None:
    runs = [_run("ferryman", 1, 100.0, 1000.0), _run("by-hand", 1, 90.0, 900.0)]
    runs[0]["details"]["moved_bytes"] = 300 << 20  # RSS 256 MiB
    s = summarize_cell(runs, None, None, mode="cold")
    assert s["multiples"]["ferryman"]["moved_x_rss"] == pytest.approx(300 / 256)
    assert s["multiples"]["by-hand"]["moved_x_rss"] is None  # not measured


def test_goal_table_counts_only_idle_cells() -> None:
    idle = _cell("cold", 256, {"ferryman": 100.0, "by-hand": 100.0})
    dirty = {**_cell("cold", 256, {"ferryman": 900.0, "by-hand": 100.0}), "dirty_rate": 1000}
    rows = goal_table([idle, dirty])
    assert [r["id"] for r in rows] == ["cold-256-downtime", "cold-256-total"]
    assert rows[0]["values"]["by-hand"]["value"] == pytest.approx(1.0)


def test_shaped_goals_at_one_gbit_and_the_bandwidth_cap_on_the_wire() -> None:
    def shaped(mode: str, link: int, down: dict[str, float]) -> dict[str, Any]:
        return {**_cell(mode, 256, down), "link_mbit": link}

    capped = _cell("max-bandwidth", 128, {"ferryman": 3000.0})
    capped["summary"]["tools"]["ferryman"]["wire_mbit"] = {"n": 3, "median": 215.0,
                                                           "min": 210.0, "max": 230.0}
    cells = [shaped("shaped-redis", 1000, {"ferryman": 400.0, "by-hand": 1000.0,
                                           "by-hand-tls": 1100.0}),
             shaped("shaped-redis", 10000, {"ferryman": 400.0, "by-hand": 300.0,
                                            "by-hand-tls": 500.0}),
             shaped("shaped-random", 1000, {"ferryman": 1100.0, "by-hand": 1000.0,
                                            "by-hand-tls": 1100.0}),
             capped]
    rows = {r["id"]: r for r in goal_table(cells)}
    assert list(rows) == ["shaped-redis-1000-downtime", "shaped-random-1000-downtime",
                          "max-bandwidth-200"]  # no goal at 10 Gbit/s
    redis = rows["shaped-redis-1000-downtime"]["values"]
    assert redis["by-hand"] == {"value": pytest.approx(0.4), "ok": True, "reference": False}
    rnd = rows["shaped-random-1000-downtime"]["values"]
    assert (rnd["by-hand"]["ok"], rnd["by-hand-tls"]["ok"]) == (False, True)  # 1.1 > 1.05
    cap = rows["max-bandwidth-200"]["values"]["ferryman"]
    assert cap == {"value": pytest.approx(1.075), "ok": True, "reference": False}
    capped["summary"]["tools"]["ferryman"]["wire_mbit"]["median"] = 179.0
    assert goal_table([capped])[0]["values"]["ferryman"]["ok"] is False  # 10.5% under
