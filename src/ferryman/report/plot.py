"""A migration report as a picture: the phase timeline, the downtime, pre-copy iterations.

matplotlib is imported only when a picture is drawn (the CLI starts without it), and only
through ``Figure`` with the Agg canvas: no pyplot, no global backend, no display needed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferryman.errors import ReportError
from ferryman.host.pages import PAGE_SIZE
from ferryman.migration.report import MigrationReport
from ferryman.report.load import ReportView, as_view
from ferryman.report.summary import mib, ms
from ferryman.report.timeline import Span, Timeline, build_timeline

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Colours (Tableau 10) by what the phase does; unknown phases are grey.
PHASE_COLOURS = {
    "HELLO": "#bab0ac", "PLANNED": "#bab0ac", "PRESYNC": "#bab0ac",
    "ITERATING": "#4c78a8",
    "FREEZING": "#e45756", "DUMPED": "#e45756",
    "TRANSFERRING": "#b279a2",
    "AWAIT_RESTORE": "#f58518",
    "COMMITTED": "#54a24b",
    "SERVING_PAGES": "#72b7b2",
    "RESUMING": "#9d755d",
}
DOWNTIME_COLOUR = "#d62728"
TAIL_COLOUR = "#17becf"
GAP_COLOUR = "#9467bd"
FINAL_COLOURS = {"DONE": "#54a24b", "ROLLED_BACK": "#9d755d", "LOST": "#d62728",
                 "FAILED": "#d62728"}
WRITTEN_COLOUR = "#4c78a8"
SKIPPED_COLOUR = "#c6d4e4"
FINAL_DUMP_COLOUR = "#e45756"
WIDTH_IN = 12.0
ERROR_WIDTH = 130
ERROR_LINES = 3
LABEL_CHAR_FRACTION = 0.0085  # a bracket label character's width, as a share of the axis
DPI = 110


def plot_report(report: MigrationReport | ReportView | Mapping[str, Any], out: Path) -> None:
    """Draw ``report`` into the PNG file ``out``."""
    try:
        import matplotlib  # noqa: F401  (only: is it there?)
    except ImportError as exc:
        raise ReportError(str(out), "cannot draw: matplotlib is not installed",
                          hint="install it with 'pip install matplotlib'") from exc
    fig = draw(as_view(report))
    try:
        fig.savefig(out, dpi=DPI)
    except OSError as exc:
        raise ReportError(str(out), f"cannot write the picture: {exc.strerror or exc}",
                          hint="check the directory exists and is writable") from exc


def draw(view: ReportView) -> Figure:
    """The report's figure, on an Agg canvas: the timeline, and pre-copy iterations below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = build_timeline(view)
    rows = len(t.rows) + (1 if t.final_phase else 0)
    timeline_h = 1.6 + 0.42 * max(rows, 2)
    iter_h = 3.2 if view.iterations else 0.0
    fig = Figure(figsize=(WIDTH_IN, timeline_h + iter_h + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    if view.iterations:
        ax, ax_it = fig.subplots(2, 1, height_ratios=[timeline_h, iter_h])
        _iterations(ax_it, view)
    else:
        ax = fig.subplots()
    _title(fig, ax, view, t)
    _timeline(ax, t)
    return fig


def _title(fig: Figure, ax: Axes, view: ReportView, t: Timeline) -> None:
    r = view.report
    fig.suptitle(f"ferryman {r.mode} migration {r.migration_id}: {r.result.upper()}",
                 fontsize=14, fontweight="bold")
    facts = [f"RSS {mib(r.rss_bytes)}", f"moved {mib(r.bytes_transferred)}",
             f"downtime {ms(r.downtime_ms)}", f"total {ms(r.total_ms)}"]
    if r.downtime_ms is None and t.downtime is not None and t.resumed:
        facts[2] = f"downtime {ms(t.downtime.duration_ms)} (rolled back)"
    if r.memory_complete_ms is not None:
        facts.append(f"memory complete {ms(r.memory_complete_ms)} after resume")
    route = f"{r.source_node or '?'} -> {r.destination_node or r.destination}"
    text = f"{route}   |   " + "   |   ".join(facts)
    if r.error:
        text += "\n" + "\n".join(textwrap.wrap(f"error: {r.error}", ERROR_WIDTH,
                                              max_lines=ERROR_LINES))
    ax.set_title(text, fontsize=10, color=DOWNTIME_COLOUR if r.error else "#333333")


def _timeline(ax: Axes, t: Timeline) -> None:
    ax.set_xlabel("time since the migration started (ms)")
    if not t.bars:
        ax.text(0.5, 0.5, "no phases recorded", ha="center", va="center",
                transform=ax.transAxes, fontsize=12, color="#666666")
        ax.set_yticks([])
        return
    rows = [*t.rows, *([t.final_phase] if t.final_phase and t.final_phase not in t.rows
                       else [])]
    y_of = {name: i for i, name in enumerate(rows)}
    right = max(t.end_ms, t.page_tail.end_ms if t.page_tail else 0.0,
                t.client_gap.end_ms if t.client_gap else 0.0, 1.0)
    ax.set_xlim(-0.01 * right, right * 1.13)
    levels = [span for span in (t.downtime, t.page_tail, t.client_gap) if span is not None]
    top = -0.6 - 0.5 * len(levels)  # room above the first phase for the brackets
    ax.set_ylim(len(rows) - 0.4, top)  # first phase on top
    ax.set_yticks(range(len(rows)), rows)
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    sliver = right * 0.003  # the narrowest bar drawn, so 0.1 ms phases stay visible

    if t.downtime is not None:
        d = t.downtime
        ax.axvspan(d.start_ms, d.end_ms, color=DOWNTIME_COLOUR, alpha=0.07, linewidth=0)
        for x in (d.start_ms, d.end_ms) if t.resumed else (d.start_ms,):
            ax.axvline(x, color=DOWNTIME_COLOUR, linestyle="--", linewidth=1)
        label = f"downtime {ms(d.duration_ms)}"
        if not t.resumed:
            label = "frozen: the workload never ran again"
        elif t.final_phase == "ROLLED_BACK":
            label += " (resumed on the source)"
        _bracket(ax, d, top + 0.45, label, DOWNTIME_COLOUR,
                 side="left" if t.page_tail is not None else "")
    if t.page_tail is not None:
        p = t.page_tail
        ax.axvspan(p.start_ms, p.end_ms, facecolor="none", edgecolor=TAIL_COLOUR,
                   hatch="///", alpha=0.35, linewidth=0)
        ax.axvline(p.end_ms, color=TAIL_COLOUR, linestyle="--", linewidth=1.2)
        _bracket(ax, p, top + 0.45 + 0.5 * _level(levels, p),
                 f"page tail: all memory there after {ms(p.duration_ms)}", "#0e7c86")

    if t.client_gap is not None:
        g = t.client_gap
        _bracket(ax, g, top + 0.45 + 0.5 * _level(levels, g),
                 f"a client waited {ms(g.duration_ms)}", GAP_COLOUR)

    span = ax.get_xlim()[1] - ax.get_xlim()[0]
    for b in t.bars:
        y = y_of[b.phase]
        colour = PHASE_COLOURS.get(b.phase, "#bab0ac")
        stays = len(t.bars_of(b.phase))
        repeated = stays > 1  # ITERATING: one bar per iteration, white gaps between them
        ax.barh(y, max(b.duration_ms, sliver), left=b.start_ms, height=0.62, color=colour,
                edgecolor="white" if repeated else colour, linewidth=0.8)
        text = f"#{b.repeat}" if repeated else ms(b.duration_ms)
        inside = b.duration_ms / span > 0.0095 * (len(text) + 1)
        if inside:
            ax.text(b.start_ms + b.duration_ms / 2, y, text, ha="center", va="center",
                    fontsize=9, color="white", fontweight="bold")
        elif b.repeat == stays:  # too narrow: beside it, if nothing follows on its row
            ax.text(b.start_ms + max(b.duration_ms, sliver) + span * 0.005, y, text,
                    ha="left", va="center", fontsize=9, color="#333333")
    if t.final_phase:
        y = y_of[t.final_phase]
        colour = FINAL_COLOURS.get(t.final_phase, "#333333")
        ax.plot([t.end_ms], [y], marker="D", markersize=8, color=colour)
        ax.text(t.end_ms + span * 0.015, y, f"at {ms(t.end_ms)}", ha="left", va="center",
                fontsize=9, color="#333333")


def _level(levels: list[Span], span: Span) -> int:
    """Which bracket row above the phases ``span`` takes (downtime, page tail, client gap)."""
    return next(i for i, s in enumerate(levels) if s is span)


def _bracket(ax: Axes, span: Span, y: float, label: str, colour: str, *,
             side: str = "") -> None:
    """A horizontal double arrow over ``span`` at row position y, labelled above it, or
    beside it (on ``side``, or where there is more room) when the arrow is too short."""
    x0, x1 = span.start_ms, span.end_ms
    ax.annotate("", xy=(x0, y), xytext=(x1, y),
                arrowprops={"arrowstyle": "<->", "color": colour, "linewidth": 1.3,
                            "shrinkA": 0, "shrinkB": 0})
    lo, hi = ax.get_xlim()
    style: dict[str, Any] = {"fontsize": 9.5, "color": colour, "fontweight": "bold"}
    label_width = len(label) * LABEL_CHAR_FRACTION * (hi - lo)
    if label_width < (x1 - x0) * 0.95:
        ax.text((x0 + x1) / 2, y - 0.08, label, ha="center", va="bottom", **style)
    elif side == "left" or (not side and (x0 + x1) / 2 > (lo + hi) / 2):
        ax.text(x0 - 0.006 * (hi - lo), y, label, ha="right", va="center", **style)
    else:
        ax.text(x1 + 0.006 * (hi - lo), y, label, ha="left", va="center", **style)


def _iterations(ax: Axes, view: ReportView) -> None:
    """Pages per pre-copy iteration (written, and skipped as unchanged), then the final dump."""
    its = view.iterations
    labels = [str(n) for n in range(1, len(its) + 1)]
    written = [i.pages_written for i in its]
    skipped = [i.pages_skipped for i in its]
    notes = [f"{mib(i.bytes)}\n{ms(i.seconds * 1000)}" for i in its]
    colours = [WRITTEN_COLOUR] * len(its)
    dump = view.report.criu.get("dump", {})
    if "pages_written" in dump:
        labels.append("final\ndump")
        written.append(dump["pages_written"])
        skipped.append(dump.get("pages_skipped_parent", 0))
        memdump = dump.get("memdump_time")
        notes.append(f"{mib(dump['pages_written'] * PAGE_SIZE)}"
                     + (f"\n{ms(memdump / 1000)}" if memdump is not None else ""))
        colours.append(FINAL_DUMP_COLOUR)
    x = list(range(len(labels)))
    ax.bar([xi - 0.2 for xi in x], written, color=colours, width=0.4,
           label="pages written (red: the final dump, frozen)")
    ax.bar([xi + 0.2 for xi in x], skipped, color=SKIPPED_COLOUR, width=0.4,
           label="pages skipped (unchanged since the last iteration)")
    top = max([*written, *skipped, 1])
    for xi, w, note in zip(x, written, notes, strict=True):
        ax.text(xi - 0.2, w + top * 0.02, note, ha="center", va="bottom", fontsize=8.5,
                color="#333333")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, top * 1.3)
    ax.set_xlabel("pre-copy iteration")
    ax.set_ylabel("pages (4 KiB)")
    ax.set_title("pages per pre-copy iteration", fontsize=10, loc="left")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=9,
              frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
