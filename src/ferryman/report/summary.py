"""A migration report as text for the terminal. Pure: strings in, strings out.

:func:`summary` is the few lines ``ferryman migrate`` prints when it ends; ``full=True`` adds
the phase table, pre-copy iterations, every CRIU statistic, log paths and the destination's
log tail, for ``ferryman report``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any, Final

from ferryman.host.pages import PAGE_SIZE
from ferryman.migration.report import MigrationReport
from ferryman.report.load import Iteration, ReportView, as_view
from ferryman.report.timeline import Timeline, build_timeline

MIB = 1 << 20
WIDTH = 100
LOG_TAIL_LINES = 12


def compression_line(c: dict[str, Any]) -> str:
    """``--compress``: what was chosen and why, and the bytes before and after."""
    text = f"{'on' if c.get('on') else 'off'} ({c.get('setting')}: {c.get('reason')})"
    raw, wire = c.get("raw_bytes"), c.get("wire_bytes")
    if isinstance(raw, int) and isinstance(wire, int) and wire:
        text += f"; {raw / (1 << 20):.1f} MiB of pages as {wire / (1 << 20):.1f} MiB " \
                f"on the wire, ratio {raw / wire:.2f}"
    if c.get("framed_by") == "criu":
        text += " (compressed by the source's CRIU itself)"
    return text


def ms(value: float | None) -> str:
    """Milliseconds for people: '-' when unknown, a decimal only below 10 ms."""
    if value is None:
        return "-"
    if 0 < value < 0.05:
        return "<0.1 ms"
    return f"{value:.1f} ms" if abs(value) < 10 else f"{value:.0f} ms"


def mib(n: int | float) -> str:
    return f"{n / MIB:.1f} MiB"


def _us(stats: Mapping[str, int], key: str) -> str:
    return ms(stats[key] / 1000) if key in stats else "-"


def summary(report: MigrationReport | ReportView | Mapping[str, Any], *,
            full: bool = False) -> str:
    view = as_view(report)
    r = view.report
    dump = r.criu.get("dump", {})
    restore = r.criu.get("restore", {})
    dest_pid = r.destination_pid if r.destination_pid is not None else "-"
    timeline = build_timeline(view)
    downtime = ms(r.downtime_ms)
    if r.downtime_ms is None and timeline.downtime is not None:
        how = "until the rollback" if timeline.resumed else "and never resumed"
        downtime = f"- (frozen {ms(timeline.downtime.duration_ms)} {how})"
    lines = [
        f"migration {r.migration_id}: {r.result.upper()} ({r.mode})",
        f"  workload     PID {r.source_pid} on {r.source_node or '-'} -> "
        f"PID {dest_pid} on {r.destination_node or r.destination}",
        f"  downtime     {downtime}    total {ms(r.total_ms)}",
        f"  moved        {mib(r.bytes_transferred)} (pages {mib(r.page_bytes)}, other images "
        f"{r.image_bytes / 1024:.0f} KiB; RSS {mib(r.rss_bytes)})",
    ]
    if r.container:
        synced = r.sync.get("presync_bytes", 0) + r.sync.get("final_sync_bytes", 0)
        final = ("no final sync: nothing changed since the pre-sync (checked in "
                 f"{ms(r.sync.get('final_sync_ms'))})" if r.sync.get("final_sync_skipped")
                 else f"the final sync (frozen) took {ms(r.sync.get('final_sync_ms'))}")
        lines.append(f"  container    runc {r.container}: {mib(synced)} of files rsynced, "
                     f"{final}")
        if "runc_after_commit_ms" in r.sync:
            after = ms(r.sync["runc_after_commit_ms"])
            lines.append(f"               runc's clean-up after the commit took {after} "
                         "(not downtime: the container ran on the destination)")
    if r.streamed:
        pages = f"{r.lazy_pages} pages" if r.lazy_pages is not None else "the pages"
        lines.append(f"  restore      streamed: {pages} went straight into the restored tree, "
                     f"held stopped, in {ms(r.streamed_fetch_ms)} (in the downtime)")
    elif r.memory_complete_ms is not None or r.lazy_pages is not None:
        pages = f"{r.lazy_pages} lazy pages" if r.lazy_pages is not None else "lazy pages"
        lines.append(f"  page tail    {pages} arrived {ms(r.memory_complete_ms)} after the "
                     "workload resumed on the destination")
        if r.lazy_faults is not None and r.lazy_pages is not None:
            lines.append(f"               {r.lazy_faults} fetched on a page fault, the other "
                         f"{max(r.lazy_pages - r.lazy_faults, 0)} pushed in the background")
        if r.lazy_fault_wait_ms is not None:
            lines.append(f"  fault stall  the workload waited {ms(r.lazy_fault_wait_ms)} on "
                         f"missing pages after the resume (the longest wait "
                         f"{ms(r.lazy_fault_max_ms)}; not in the downtime)")
    if view.iterations:
        written = sum(i.pages_written for i in view.iterations)
        lines.append(f"  pre-copy     {len(view.iterations)} iterations, {written} pages "
                     f"({mib(sum(i.bytes for i in view.iterations))}) before the freeze"
                     + (f", dirty pages tracked by {r.dirty_tracker}" if r.dirty_tracker
                        else ""))
    if r.policy:
        lines.append(f"  policy       {r.policy}: {r.convergence or '-'}")
        over = "; the budget was missed" if r.over_budget else ""
        lines.append(f"  predicted    downtime {ms(r.predicted_downtime_ms)}, actual "
                     f"{ms(r.downtime_ms)}{over}")
    if r.mode_reason:
        lines.append(f"  auto mode    {r.mode_reason}")
    if r.max_bandwidth_bytes_per_s:
        lines.append(f"  bandwidth    pages capped at {r.max_bandwidth_bytes_per_s / 125_000:g} "
                     "Mbit/s on the wire (--max-bandwidth)")
    if r.link_source:
        rate = (f"{r.link_bytes_per_s / 125_000:.0f} Mbit/s" if r.link_bytes_per_s
                else "too fast to time")
        lines.append(f"  link         {rate}, {r.link_source}")
    if r.compression:
        lines.append("  compression  " + compression_line(r.compression))
    if r.probe is not None:
        p = r.probe
        broke = f"; {p.error}" if p.error else ""
        lines.append(f"  client gap   {ms(p.max_gap_ms)}, the longest wait of a client at "
                     f"{p.target} ({p.answered} of {p.sent} requests answered{broke})")
    if r.forwarded_packets:
        lines.append(f"  held back    {r.forwarded_packets} segments reached the source while it "
                     "was frozen; sent on to the destination after its restore")
    if r.launched:
        lines.append("  started      warm, by this node's agent (its launcher, "
                     "STATE_DIR/launcher.sock)")
    if r.steps:
        lines.append(f"  before freeze {step_line(r.steps)}")
    criu = [f"{name} {_us(stats, key)}" for name, stats, key in (
        ("freezing", dump, "freezing_time"), ("frozen", dump, "frozen_time"),
        ("memdump", dump, "memdump_time"), ("restore", restore, "restore_time"))
        if key in stats]
    if criu:
        lines.append(f"  criu         {', '.join(criu)}")
    if r.error:
        lines.append(f"  error        {r.error}")
    if not full:
        return "\n".join(lines)
    lines += ["", *phase_table(timeline)]
    if view.iterations:
        lines += ["", *iteration_table(view.iterations, dump)]
    for side in ("dump", "restore"):
        if r.criu.get(side):
            lines += ["", *criu_stats(side, r.criu[side])]
    if r.logs:
        lines += ["", "logs"] + [f"  {name:<12} {path}" for name, path in sorted(r.logs.items())]
    if r.destination_log_tail.strip():
        tail = r.destination_log_tail.rstrip().splitlines()[-LOG_TAIL_LINES:]
        lines += ["", "destination log (last lines)"] + [f"  {line}" for line in tail]
    return "\n".join(lines)


STEP_NAMES: Final = {  # the report's steps (agent/steps.py), in the order they run
    "hello_facts": "criu facts", "connect": "connect", "hello_exchange": "hello",
    "destination_rows": "destination check", "feature_probes": "criu probes",
    "dry_run": "dry run", "dirty_rate": "dirty rate", "compress_sample": "memory sample",
    "link_test": "link test", "plan_ready": "plan→ready",
    "prefault": "of which destination prefault",
}


def step_line(steps: Mapping[str, float]) -> str:
    """What each step before the freeze cost, in the order they run (overlapping ones: criu
    facts with connect, criu probes with the destination's check)."""
    known = [k for k in STEP_NAMES if k in steps] + sorted(set(steps) - set(STEP_NAMES))
    return ", ".join(f"{STEP_NAMES.get(k, k)} {ms(steps[k])}" for k in known)


def phase_table(t: Timeline) -> list[str]:
    """Each phase with its start and duration; '*' marks the phases the workload was down."""
    if not t.bars:
        return ["phases       none recorded"]
    down = t.downtime
    out = [f"  {'phase':<18}{'start':>10}{'duration':>12}"]
    for b in t.bars:
        name = f"{b.phase} #{b.repeat}" if len(t.bars_of(b.phase)) > 1 else b.phase
        frozen = down is not None and b.end_ms > down.start_ms and b.start_ms < down.end_ms
        out.append(f"  {name:<18}{_start(b.start_ms):>10}{ms(b.duration_ms):>12}"
                   f"{'  *' if frozen else ''}")
    if t.final_phase:
        out.append(f"  {t.final_phase:<18}{_start(t.end_ms):>10}")
    if down is not None:
        how = "" if t.resumed else ", never resumed"
        out.append(f"  * the workload was frozen for {ms(down.duration_ms)} "
                   f"({ms(down.start_ms)} to {ms(down.end_ms)}{how})")
    if t.page_tail is not None:
        out.append(f"  page tail: every page on the destination at {ms(t.page_tail.end_ms)}")
    return ["phases", *out]


def _start(value: float) -> str:
    return f"{value:.0f} ms"  # a point in time: whole milliseconds are enough


def iteration_table(iterations: tuple[Iteration, ...], dump: Mapping[str, int]) -> list[str]:
    """Pre-copy iterations, then the final dump's pages (what was still dirty when frozen)."""
    out = ["pre-copy iterations",
           f"  {'#':>5}{'pages written':>15}{'skipped':>10}{'MiB':>9}{'time':>10}"]
    for n, it in enumerate(iterations, 1):
        out.append(f"  {n:>5}{it.pages_written:>15}{it.pages_skipped:>10}"
                   f"{it.bytes / MIB:>9.1f}{ms(it.seconds * 1000):>10}")
    if "pages_written" in dump:
        out.append(f"  {'final':>5}{dump['pages_written']:>15}"
                   f"{dump.get('pages_skipped_parent', 0):>10}"
                   f"{dump['pages_written'] * PAGE_SIZE / MIB:>9.1f}"
                   f"{_us(dump, 'memdump_time'):>10}")
    return out


def criu_stats(side: str, stats: Mapping[str, int]) -> list[str]:
    """CRIU's own statistics: times (microseconds) as ms, then the counters."""
    times = [f"{k.removesuffix('_time')} {ms(v / 1000)}" for k, v in stats.items()
             if k.endswith("_time")]
    counts = [f"{k} {v}" for k, v in stats.items() if not k.endswith("_time")]
    out = [f"criu {side}"]
    for label, items in (("times", times), ("counters", counts)):
        if items:
            out += textwrap.wrap(", ".join(items), WIDTH, initial_indent=f"  {label:<10} ",
                                 subsequent_indent=" " * 13)
    return out
