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


DOWNTIME_GOAL = 1.05  # ferryman's downtime <= 1.05 x by hand
TOTAL_GOAL = 1.2  # ferryman's total time <= 1.2 x by hand

# Per tool: the metrics summarized, as (name in the summary, key in a run, key in its details).
_COMMON: list[tuple[str, str | None, str | None]] = [
    ("downtime_ms", "downtime_ms", None), ("total_ms", "total_ms", None),
    ("workload_max_gap_ms", None, "workload_max_gap_ms"),
    ("timens_jump_ms", None, "timens_jump_ms"), ("bytes_moved", "bytes_moved", None)]
_METRICS: dict[str, list[tuple[str, str | None, str | None]]] = {
    "ferryman": [*_COMMON,
                 ("report_downtime_ms", None, "report_downtime_ms"),
                 ("report_total_ms", None, "report_total_ms")],
    "by-hand": [*_COMMON, ("dump_ms", None, "dump_ms"), ("copy_ms", None, "copy_ms"),
                ("restore_ms", None, "restore_ms")],
}


def _value(run: dict[str, Any], key: str | None, detail: str | None) -> float | None:
    if not run.get("ok"):
        return None
    v = run.get(key) if key else (run.get("details") or {}).get(detail or "")
    return float(v) if isinstance(v, int | float) else None


def summarize_cell(runs: list[dict[str, Any]], tcp_bps: float | None,
                   memcpy_bps: float | None) -> dict[str, Any]:
    """Medians, ranges, ferryman/by-hand ratios and floor multiples for one (mode, size) cell.

    ``runs`` are RunResult JSON dicts of one cell; failed runs count only in ``errors``.
    """
    tools: dict[str, dict[str, Summary | None]] = {}
    for tool, metrics in _METRICS.items():
        mine = [r for r in runs if r.get("tool") == tool]
        tools[tool] = {name: summarize(_value(r, k, d) for r in mine) for name, k, d in metrics}
    rss = summarize(r.get("rss_bytes") for r in runs if r.get("ok"))
    rss_b = int(rss.median) if rss else None
    fm, bh = tools["ferryman"], tools["by-hand"]
    ratios = {
        "downtime": ratio(fm["downtime_ms"], bh["downtime_ms"]),
        "total": ratio(fm["total_ms"], bh["total_ms"]),
        "total_report": ratio(fm["report_total_ms"], bh["total_ms"]),
    }
    multiples: dict[str, dict[str, float | None]] = {}
    for tool, sums in tools.items():
        total = sums["total_ms"].median if sums["total_ms"] else None
        down = sums["downtime_ms"].median if sums["downtime_ms"] else None
        multiples[tool] = {
            "total_x_tcp": floor_multiple(total, rss_b, tcp_bps),
            "total_x_memcpy": floor_multiple(total, rss_b, memcpy_bps),
            "downtime_x_tcp": floor_multiple(down, rss_b, tcp_bps),
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
        "goals": {"downtime": meets(ratios["downtime"], DOWNTIME_GOAL),
                  "total": meets(ratios["total"], TOTAL_GOAL)},
        "floors_ms": {"tcp": tcp_floor * 1000 if tcp_floor else None,
                      "memcpy": memcpy_floor * 1000 if memcpy_floor else None},
        "multiples": multiples,
        "errors": [f"{r.get('tool')} run {r.get('rep')}: {r.get('error')}"
                   for r in runs if not r.get("ok")],
    }
