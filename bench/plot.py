"""``python -m bench.plot RESULTS.json [-o OUT.png]``: downtime and total time against RSS.

One line per mode and tool (ferryman and the by-hand baselines) through the median of each
cell, every single run as a faint dot behind it. Cells or runs that are missing, failed or
lack a number are left out (and counted in the subtitle), so a partial or interrupted
benchmark still draws.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MIB = 1 << 20
METRICS = (("downtime_ms", "downtime"), ("total_ms", "total time"))  # key, title
# Colour says which tool, line and marker which mode.
TOOL_COLOURS = {"ferryman": "#1f77b4", "by-hand": "#7f7f7f", "by-hand-tls": "#ff7f0e"}
OTHER_COLOURS = ("#2ca02c", "#d62728", "#9467bd", "#8c564b")
MODE_STYLES = {"cold": ("-", "o"), "postcopy": ("--", "^"), "precopy": (":", "s")}
OTHER_STYLES = (("-.", "D"), ((0, (5, 1, 1, 1)), "v"))


@dataclass(frozen=True)
class Run:
    rss_mib: float
    values: dict[str, float]  # metric -> value, only those the run has


@dataclass
class Series:
    """One mode and tool: its runs, grouped by benchmark cell (size)."""

    mode: str
    tool: str
    cells: dict[float, list[Run]] = field(default_factory=dict)  # size MiB -> runs

    def runs(self) -> list[Run]:
        return [r for runs in self.cells.values() for r in runs]

    def medians(self, metric: str) -> list[tuple[float, float]]:
        """(median RSS MiB, median value) per cell that has the metric, by RSS."""
        out = []
        for runs in self.cells.values():
            have = [r for r in runs if metric in r.values]
            if have:
                out.append((statistics.median(r.rss_mib for r in have),
                            statistics.median(r.values[metric] for r in have)))
        return sorted(out)


def _number(v: object) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    return None


def collect(results: dict[str, Any], rate: int = 0) -> tuple[list[Series], int]:
    """The runs of the memory cells with dirty rate ``rate`` (S1; cells without one are
    idle) as series per (mode, tool), and how many of those runs were left out."""
    series: dict[tuple[str, str], Series] = {}
    skipped = 0
    cells = results.get("cells")
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict) or cell.get("kind", "memory") != "memory":
            continue  # S2, S3 and S4 are not about RSS: their tables say it
        if cell.get("dirty_rate", 0) != rate:
            continue
        mode = str(cell.get("mode", "?"))
        size = _number(cell.get("size_mib"))
        runs = cell.get("runs")
        for run in runs if isinstance(runs, list) else []:
            if not isinstance(run, dict):
                continue
            tool = str(run.get("tool", "?"))
            rss = _number(run.get("rss_bytes"))
            rss_mib = rss / MIB if rss else size
            values = {m: v for m, _ in METRICS if (v := _number(run.get(m))) is not None}
            if run.get("ok") is False or rss_mib is None or not values:
                skipped += 1
                continue
            s = series.setdefault((mode, tool), Series(mode, tool))
            s.cells.setdefault(size if size is not None else rss_mib, []).append(
                Run(rss_mib, values))
    order = {t: i for i, t in enumerate(TOOL_COLOURS)}
    return sorted(series.values(), key=lambda s: (s.mode, order.get(s.tool, 99), s.tool)), \
        skipped


def draw(results: dict[str, Any], rate: int = 0) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    all_series, skipped = collect(results, rate)
    fig = Figure(figsize=(13, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(METRICS))
    modes = sorted({s.mode for s in all_series})
    tools = sorted({s.tool for s in all_series})
    colour = {t: TOOL_COLOURS.get(t, OTHER_COLOURS[i % len(OTHER_COLOURS)])
              for i, t in enumerate(tools)}
    style = {m: MODE_STYLES.get(m, OTHER_STYLES[i % len(OTHER_STYLES)])
             for i, m in enumerate(modes)}
    for ax, (metric, label) in zip(axes, METRICS, strict=True):
        _panel(ax, all_series, metric, label, colour, style)
    if all_series:
        axes[0].legend(fontsize=9, frameon=False, loc="upper left")
    env = results.get("environment")
    env = env if isinstance(env, dict) else {}
    what = "idle workload" if rate == 0 else f"{rate} dirty pages/s"
    fig.suptitle(f"ferryman benchmark {results.get('started', '')}: downtime and total time "
                 f"against workload RSS ({what})", fontsize=13, fontweight="bold")
    facts = [f"{results['runs']} runs per tool and cell" if "runs" in results else "",
             f"kernel {env['kernel']}" if env.get("kernel") else "",
             f"criu {str(env['criu']).removeprefix('Version: ')}" if env.get("criu") else "",
             f"commit {env['commit']}" if env.get("commit") else "",
             "lines: medians; dots: single runs",
             f"{skipped} failed or incomplete run{'s' if skipped > 1 else ''} not shown"
             if skipped else ""]
    if results.get("interrupted"):
        facts.append("INTERRUPTED: partial results")
    fig.supxlabel("   |   ".join(f for f in facts if f), fontsize=9, color="#555555")
    return fig


def _panel(ax: Axes, all_series: list[Series], metric: str, label: str,
           colour: dict[str, str], style: dict[str, tuple[Any, str]]) -> None:
    top = 0.0
    for s in all_series:
        line, marker = style[s.mode]
        runs = [r for r in s.runs() if metric in r.values]
        ax.scatter([r.rss_mib for r in runs], [r.values[metric] for r in runs], s=22,
                   color=colour[s.tool], alpha=0.4, marker=marker, linewidths=0)
        med = s.medians(metric)
        if med:
            ax.plot([x for x, _ in med], [y for _, y in med], linestyle=line, marker=marker,
                    color=colour[s.tool], linewidth=1.8, markersize=6,
                    label=f"{s.mode}, {s.tool}")
        top = max([top, *(r.values[metric] for r in runs)])
    if not all_series:
        ax.text(0.5, 0.5, "no successful cold/post-copy runs in these results",
                ha="center", va="center",
                transform=ax.transAxes, color="#666666")
    ax.set_xlabel("workload RSS (MiB)")
    ax.set_ylabel(f"{label} (ms)")
    ax.set_title(label, fontsize=11, loc="left")
    ax.set_xlim(left=0)
    ax.set_ylim(0, top * 1.08 if top else 1)
    ax.grid(color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="bench/results/<timestamp>.json")
    ap.add_argument("-o", "--out", type=Path, help="the PNG (default: RESULTS with .png)")
    ap.add_argument("--rate", type=int, default=0,
                    help="S1: the cells with this dirty rate, pages/s (default 0: idle)")
    args = ap.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as exc:
        print(f"bench.plot: cannot read {args.results}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(results, dict) or not isinstance(results.get("cells"), list):
        print(f"bench.plot: {args.results} has no benchmark cells (not a bench.run result?)",
              file=sys.stderr)
        return 1
    out = args.out or args.results.with_suffix(".png")
    draw(results, args.rate).savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
