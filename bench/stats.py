"""Pure summaries of benchmark runs: median and range, ratios, multiples of a physical floor."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    min: float
    max: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(values: Iterable[float | None]) -> Summary | None:
    """Median and min-max of the values that were measured (``None`` = run failed)."""
    got = [float(v) for v in values if v is not None]
    if not got:
        return None
    return Summary(n=len(got), median=statistics.median(got), min=min(got), max=max(got))


def ratio(numerator: Summary | None, denominator: Summary | None) -> float | None:
    """Ratio of two medians; ``None`` when either side is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator.median <= 0:
        return None
    return numerator.median / denominator.median


def floor_seconds(nbytes: int | None, bandwidth: float | None) -> float | None:
    """Time to move ``nbytes`` at ``bandwidth`` bytes per second."""
    if not nbytes or not bandwidth or bandwidth <= 0:
        return None
    return nbytes / bandwidth


def floor_multiple(ms: float | None, nbytes: int | None, bandwidth: float | None
                   ) -> float | None:
    """``ms`` as a multiple of the physical floor RSS / bandwidth."""
    floor = floor_seconds(nbytes, bandwidth)
    if ms is None or floor is None:
        return None
    return (ms / 1000.0) / floor


def meets(value: float | None, limit: float) -> bool | None:
    """Whether a ratio stays within its goal; ``None`` when it could not be measured."""
    return None if value is None else value <= limit


def criu_ms(stats: object) -> dict[str, float]:
    """CRIU's dump timings (µs in stats-dump and in ferryman's report ``criu.dump``) as
    ``*_ms`` details: ``freezing_time`` (seizing every task), ``frozen_time`` (the tree
    stopped, as CRIU counts it), ``memdump_time``, ``memwrite_time``."""
    if not isinstance(stats, dict):
        return {}
    out: dict[str, float] = {}
    for key in ("freezing_time", "frozen_time", "memdump_time", "memwrite_time"):
        v = stats.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[f"{key}_ms"] = v / 1000.0
    return out


FERRYMAN = "ferryman"
BY_HAND = "by-hand"  # CRIU's commands as its documentation types them: plain TCP pages
BY_HAND_TLS = "by-hand-tls"  # the same with CRIU's TLS, as ferryman always transfers pages
BASELINES = (BY_HAND, BY_HAND_TLS)
TOOLS = (FERRYMAN, *BASELINES)

# Goals of ferryman / by hand (ratios of medians), per mode and metric.
CELL_GOALS: dict[str, dict[str, float]] = {
    "cold": {"downtime": 1.05, "total": 1.2},
    "postcopy": {"downtime": 1.1},
}
SCALING_GOAL = 1.5  # post-copy downtime, largest size / smallest size (4 GiB / 256 MiB)
POSTCOPY_VS_COLD_GOAL = 0.25  # post-copy downtime / cold downtime at the same size (1 GiB)
POSTCOPY_VS_COLD_SIZE = 1024  # MiB; the largest size both modes ran if this one is missing
# S3 as a runc container (issues #5, #8): ferryman's client gap / by hand's, each migration,
# and ferryman's own post-copy client gap on this machine.
CONTAINER_MODE = "runc-echo"
ECHO_MODE = "echo"
CONTAINER_GAP_GOAL = 1.0
POSTCOPY_GAP_MS = 200.0
# Podman containers (issue #19): ferryman's client gap / Podman's own export/import's
# (the "by-hand" tool of these modes), each migration mode, same run.
PODMAN_MODES = ("podman-echo", "podman-redis")
PODMAN_GAP_GOAL = 0.3  # S3's echo server, as a process and as a container
# Issue 17, on A's link shaped to SHAPED_GOAL_MBIT: ferryman's downtime / by hand's, per
# shaped mode (redis compresses, random pages do not); --max-bandwidth's rate on the wire
# within BANDWIDTH_TOLERANCE of the cap.
SHAPED_GOAL_MBIT = 1000
SHAPED_GOALS = {"shaped-redis": 0.5, "shaped-random": 1.05}
BANDWIDTH_MODE = "max-bandwidth"
BANDWIDTH_TOLERANCE = 0.1

# Per tool: the metrics summarized, as (name in the summary, key in a run, key in its details).
_COMMON: list[tuple[str, str | None, str | None]] = [
    ("downtime_ms", "downtime_ms", None), ("total_ms", "total_ms", None),
    ("memory_complete_ms", "memory_complete_ms", None),
    ("workload_max_gap_ms", None, "workload_max_gap_ms"),
    ("timens_jump_ms", None, "timens_jump_ms"), ("bytes_moved", "bytes_moved", None),
    # CRIU's own dump timings (cold only), S3's client and S4's children
    *((k, None, k) for k in ("freezing_time_ms", "frozen_time_ms", "memdump_time_ms",
                             "client_gap_end_ms", "children_max_gap_ms")),
    # S1: A's interface bytes (+ by hand's cp), S2: the load client's throughput
    *((k, None, k) for k in ("moved_bytes", "wire_bytes", "wire_mbit", "rps_before",
                             "rps_during",
                             "rps_after", "rb_get_rps_before", "rb_get_rps_after"))]
_BY_HAND: list[tuple[str, str | None, str | None]] = [
    *_COMMON, *((k, None, k) for k in ("dump_ms", "copy_ms", "lazy_start_ms", "restore_ms",
                                       "resumed_ms", "lazy_pages_exit_ms",
                                       # S3: what by hand does about the service address
                                       "addr_del_ms", "addr_add_ms", "garp_start_ms"))]
_METRICS: dict[str, list[tuple[str, str | None, str | None]]] = {
    FERRYMAN: [*_COMMON,
               ("report_downtime_ms", None, "report_downtime_ms"),
               ("report_total_ms", None, "report_total_ms"),
               ("lazy_pages", None, "lazy_pages")],
    BY_HAND: _BY_HAND,
    BY_HAND_TLS: _BY_HAND,
}


def _value(run: dict[str, Any], key: str | None, detail: str | None) -> float | None:
    if not run.get("ok"):
        return None
    v = run.get(key) if key else (run.get("details") or {}).get(detail or "")
    return float(v) if isinstance(v, int | float) else None


def summarize_cell(runs: list[dict[str, Any]], tcp_bps: float | None,
                   memcpy_bps: float | None, mode: str = "cold") -> dict[str, Any]:
    """Medians, ranges, ratios against each baseline and floor multiples for one cell.

    ``runs`` are RunResult JSON dicts of one (mode, size) cell; failed runs count only in
    ``errors``. ``ratios[baseline]`` are ferryman / that baseline (medians) and
    ``goals[baseline]`` whether they meet ``CELL_GOALS[mode]``.
    """
    tools: dict[str, dict[str, Summary | None]] = {}
    for tool, metrics in _METRICS.items():
        mine = [r for r in runs if r.get("tool") == tool]
        tools[tool] = {name: summarize(_value(r, k, d) for r in mine) for name, k, d in metrics}
    rss = summarize(r.get("rss_bytes") for r in runs if r.get("ok"))
    rss_b = int(rss.median) if rss else None
    fm = tools[FERRYMAN]
    ratios: dict[str, dict[str, float | None]] = {}
    goals: dict[str, dict[str, bool | None]] = {}
    for base in BASELINES:
        bh = tools[base]
        ratios[base] = {
            "downtime": ratio(fm["downtime_ms"], bh["downtime_ms"]),
            "total": ratio(fm["total_ms"], bh["total_ms"]),
            "total_report": ratio(fm["report_total_ms"], bh["total_ms"]),
            "memory_complete": ratio(fm["memory_complete_ms"], bh["memory_complete_ms"]),
            "freezing_time": ratio(fm["freezing_time_ms"], bh["freezing_time_ms"]),
        }
        goals[base] = {metric: meets(ratios[base][metric], limit)
                       for metric, limit in CELL_GOALS.get(mode, {}).items()}
    multiples: dict[str, dict[str, float | None]] = {}
    for tool, sums in tools.items():
        total = sums["total_ms"].median if sums["total_ms"] else None
        down = sums["downtime_ms"].median if sums["downtime_ms"] else None
        moved = sums["moved_bytes"].median if sums["moved_bytes"] else None
        multiples[tool] = {
            "total_x_tcp": floor_multiple(total, rss_b, tcp_bps),
            "total_x_memcpy": floor_multiple(total, rss_b, memcpy_bps),
            "downtime_x_tcp": floor_multiple(down, rss_b, tcp_bps),
            "moved_x_rss": _div(moved, rss_b),
        }
    tcp_floor = floor_seconds(rss_b, tcp_bps)
    memcpy_floor = floor_seconds(rss_b, memcpy_bps)
    return {
        "rss_bytes": rss_b,
        "n_runs": {t: sum(1 for r in runs if r.get("tool") == t) for t in _METRICS},
        "n_ok": {t: sum(1 for r in runs if r.get("tool") == t and r.get("ok"))
                 for t in _METRICS},
        "tools": {t: {k: (s.to_json() if s else None) for k, s in m.items()}
                  for t, m in tools.items()},
        "ratios": ratios,
        "goals": goals,
        "floors_ms": {"tcp": tcp_floor * 1000 if tcp_floor else None,
                      "memcpy": memcpy_floor * 1000 if memcpy_floor else None},
        "multiples": multiples,
        "errors": [f"{r.get('tool')} run {r.get('rep')}: {r.get('error')}"
                   for r in runs if not r.get("ok")],
    }


def _median(cell: dict[str, Any] | None, tool: str, metric: str) -> float | None:
    if cell is None:
        return None
    s = ((cell.get("summary") or {}).get("tools") or {}).get(tool, {}).get(metric)
    return float(s["median"]) if s else None


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def _mark(value: float | None, limit: float, *, reference: bool = False) -> dict[str, Any]:
    return {"value": value, "ok": None if reference else meets(value, limit),
            "reference": reference}


_METRIC_NAMES = {"downtime": "downtime", "total": "total time"}


def goal_table(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals, one row each, with a value and ✓/✗ per column.

    Columns: ``ferryman`` (goals about ferryman alone) and one per baseline. A row whose
    goal compares ferryman with a baseline has a marked value in each baseline column; a
    goal about ferryman alone is marked in ``ferryman`` and shows each baseline's own value
    as an unmarked reference (``reference: True``). Cross-cell rows (post-copy scaling,
    post-copy vs. cold) are left out when no cell they need was run. ``cells`` are the
    result's cells (``mode``, ``size_mib``, ``summary``); only idle ones (``dirty_rate`` 0
    or missing) count: S1's cells with a dirty rate have no goals.
    """
    rows: list[dict[str, Any]] = []
    cells = [c for c in cells if not c.get("dirty_rate")]  # the goals are for idle memory
    by = {(c["mode"], c["size_mib"]): c for c in cells}
    for c in cells:
        for metric, limit in CELL_GOALS.get(c["mode"], {}).items():
            ratios = (c.get("summary") or {}).get("ratios") or {}
            values = {base: _mark((ratios.get(base) or {}).get(metric), limit)
                      for base in BASELINES}
            rows.append({"id": f"{c['mode']}-{c['size_mib']}-{metric}",
                         "goal": f"{c['mode']} {c['size_mib']} MiB: {_METRIC_NAMES[metric]} "
                                 f"≤ {limit}x by hand",
                         "limit": limit, "values": values})
    pc_sizes = sorted(s for m, s in by if m == "postcopy")
    if len(pc_sizes) >= 2:
        lo, hi = pc_sizes[0], pc_sizes[-1]
        values = {t: _mark(_div(_median(by[("postcopy", hi)], t, "downtime_ms"),
                                _median(by[("postcopy", lo)], t, "downtime_ms")),
                           SCALING_GOAL, reference=t != FERRYMAN) for t in TOOLS}
        rows.append({"id": "postcopy-scaling",
                     "goal": f"postcopy downtime at {hi} MiB ≤ {SCALING_GOAL}x at {lo} MiB",
                     "limit": SCALING_GOAL, "values": values})
    both = sorted(s for m, s in by if m == "postcopy" and ("cold", s) in by)
    if both:
        size = POSTCOPY_VS_COLD_SIZE if POSTCOPY_VS_COLD_SIZE in both else both[-1]
        pc = _median(by[("postcopy", size)], FERRYMAN, "downtime_ms")
        values = {t: _mark(_div(pc, _median(by[("cold", size)], t, "downtime_ms")),
                           POSTCOPY_VS_COLD_GOAL) for t in TOOLS}
        rows.append({"id": "postcopy-vs-cold",
                     "goal": f"postcopy downtime at {size} MiB ≤ {POSTCOPY_VS_COLD_GOAL}x "
                             f"cold downtime at {size} MiB",
                     "limit": POSTCOPY_VS_COLD_GOAL, "values": values})
    return rows + service_goals(cells) + shaped_goals(cells)


def shaped_goals(cells: list[dict[str, Any]], cap_mbit: float = 200.0
                 ) -> list[dict[str, Any]]:
    """Issue 17's: on the link shaped to ``SHAPED_GOAL_MBIT``, ferryman's downtime ≤
    ``SHAPED_GOALS[mode]`` x each baseline's; with ``--max-bandwidth`` (``cap_mbit``), the
    median rate on the wire while the pages went ÷ the cap within 1 ± ``BANDWIDTH_TOLERANCE``
    (by hand's own, uncapped, unmarked)."""
    rows: list[dict[str, Any]] = []
    for c in cells:
        limit = SHAPED_GOALS.get(c["mode"])
        if limit is not None and c.get("link_mbit") == SHAPED_GOAL_MBIT:
            ratios = (c.get("summary") or {}).get("ratios") or {}
            rows.append({"id": f"{c['mode']}-{SHAPED_GOAL_MBIT}-downtime",
                         "goal": f"{c['mode']} at {SHAPED_GOAL_MBIT} Mbit/s: downtime ≤ "
                                 f"{limit}x by hand",
                         "limit": limit,
                         "values": {b: _mark((ratios.get(b) or {}).get("downtime"), limit)
                                    for b in BASELINES}})
        if c["mode"] == BANDWIDTH_MODE:
            rate = _median(c, FERRYMAN, "wire_mbit")
            share = _div(rate, cap_mbit)
            ok = None if share is None else abs(share - 1) <= BANDWIDTH_TOLERANCE
            rows.append({"id": f"{BANDWIDTH_MODE}-{cap_mbit:.0f}",
                         "goal": f"--max-bandwidth {cap_mbit:.0f}: rate on the wire within "
                                 f"{BANDWIDTH_TOLERANCE:.0%} of {cap_mbit:.0f} Mbit/s "
                                 f"(rate ÷ cap)",
                         "limit": 1 + BANDWIDTH_TOLERANCE,
                         "values": {FERRYMAN: {"value": share, "ok": ok,
                                               "reference": False}}})
    return rows


def service_goals(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """S3's goals. The container, per migration: ferryman's client gap ≤
    ``CONTAINER_GAP_GOAL`` x by hand's (plain by hand: runc has no TLS flags). Post-copy, the
    process and the container: ferryman's client gap ≤ ``POSTCOPY_GAP_MS`` (by hand's own,
    unmarked)."""
    rows: list[dict[str, Any]] = []
    for c in (c for c in cells if c["mode"] in (ECHO_MODE, CONTAINER_MODE)):
        migration = c.get("migration") or c.get("label")
        if c["mode"] == CONTAINER_MODE:
            ratios = (c.get("summary") or {}).get("ratios") or {}
            rows.append({"id": f"{CONTAINER_MODE}-{migration}-gap",
                         "goal": f"container {migration}: client gap ≤ {CONTAINER_GAP_GOAL}x "
                                 f"by hand",
                         "limit": CONTAINER_GAP_GOAL,
                         "values": {BY_HAND: _mark((ratios.get(BY_HAND) or {}).get("downtime"),
                                                   CONTAINER_GAP_GOAL)}})
        if migration == "postcopy":
            limit = POSTCOPY_GAP_MS
            what = "container" if c["mode"] == CONTAINER_MODE else "process"
            rows.append({"id": f"{c['mode']}-postcopy-gap-ms",
                         "goal": f"{what} postcopy: client gap ≤ {limit:.0f} ms",
                         "limit": limit, "unit": "ms",
                         "values": {t: _mark(_median(c, t, "downtime_ms"), limit,
                                             reference=t != FERRYMAN)
                                    for t in (FERRYMAN, BY_HAND)}})
    for c in (c for c in cells if c["mode"] in PODMAN_MODES):
        migration = c.get("migration") or c.get("label")
        ratios = (c.get("summary") or {}).get("ratios") or {}
        rows.append({"id": f"{c['mode']}-{migration}-gap",
                     "goal": f"{c['mode']} (ferryman {migration}): client gap ≤ "
                             f"{PODMAN_GAP_GOAL}x Podman's own export/import",
                     "limit": PODMAN_GAP_GOAL,
                     "values": {BY_HAND: _mark((ratios.get(BY_HAND) or {}).get("downtime"),
                                               PODMAN_GAP_GOAL)}})
    return rows


def growth(cells: list[dict[str, Any]], mode: str = "tree", metric: str = "downtime_ms"
           ) -> dict[str, Any]:
    """How ``metric`` grows across ``mode``'s cells, per tool: the median at the cell with
    the most processes over the median at the one with the fewest (S4: 100 vs 1).

    Returns ``{"from": procs, "to": procs, "values": {tool: ratio or None}}``, or ``{}``
    when fewer than two of ``mode``'s cells were run.
    """
    mine = sorted((c for c in cells if c.get("mode") == mode), key=lambda c: c.get("procs", 1))
    if len(mine) < 2:
        return {}
    lo, hi = mine[0], mine[-1]
    return {"from": lo.get("procs", 1), "to": hi.get("procs", 1),
            "values": {t: _div(_median(hi, t, metric), _median(lo, t, metric))
                       for t in TOOLS}}
