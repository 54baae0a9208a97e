"""The SOURCE's report filled from what one migration left: CRIU's dump statistics and log
paths, pre-copy's iterations, the post-copy tail, the phase timings, and the images removed
once the report is complete."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from ferryman import wire
from ferryman.agent.files import remove_images
from ferryman.criu.stats import DUMP_STATS, read_stats
from ferryman.host.pages import PAGE_SIZE
from ferryman.migration.iterations import Summary
from ferryman.migration.report import MigrationReport, PhaseTiming, Result
from ferryman.mode import Mode

__all__ = ["collect_dump_stats", "finish_report", "record_iterations", "record_pages"]


def collect_dump_stats(report: MigrationReport, workdir: Path, *, lazy: bool = False) -> None:
    """CRIU's dump statistics and log paths into the report."""
    stats = read_stats(workdir / DUMP_STATS)
    if stats and not lazy:  # lazy stats-dump is garbage (docs/ARCHITECTURE.md, "CRIU facts")
        report.criu["dump"] = stats
        report.final_pages = stats.get("pages_written", 0)
        report.count_pages(stats.get("pages_written", 0) * PAGE_SIZE)
    for p in workdir.glob("*.log"):
        report.logs[p.stem] = str(p)


def finish_report(report: MigrationReport, workdir: Path, t0: float, freeze_at: float | None,
                  durations: Iterable[tuple[str, float, float]]) -> None:
    """Totals and phase timings (measured from ``t0``); the images removed, the logs kept."""
    report.total_ms = (time.monotonic() - t0) * 1000
    if freeze_at is not None:
        report.freeze_start_ms = (freeze_at - t0) * 1000
    report.bytes_transferred = report.image_bytes + report.page_bytes
    report.phases = [PhaseTiming(p, (s - t0) * 1000, d * 1000)
                for p, s, d in durations]
    # Images are gone to the destination (or useless after a rollback); logs stay.
    if workdir.exists():
        remove_images(workdir, keep=(DUMP_STATS,))


def record_iterations(report: MigrationReport, summary: Summary) -> None:
    """Pre-copy's iterations, once the policy stopped them."""
    report.policy = summary.policy
    report.convergence = summary.convergence
    report.predicted_downtime_ms = summary.predicted_downtime_ms
    report.over_budget = summary.over_budget
    report.fixed_cost_ms = summary.fixed_cost_ms
    report.restore_bytes_per_s = summary.restore_bytes_per_s
    report.bandwidth_bytes_per_s = summary.bandwidth_bytes_per_s
    report.switched_to_postcopy = summary.switched_to_postcopy
    if summary.switched_to_postcopy:
        report.mode = Mode.HYBRID


def record_pages(report: MigrationReport, msg: wire.PagesComplete) -> None:
    """The post-copy tail, as the destination's PagesComplete measured it; a streamed
    cold restore's fetch, which ended before the resume."""
    report.lazy_pages = msg.pages
    if report.streamed:
        report.streamed_fetch_ms = float(msg.elapsed_ms)
        report.count_pages(msg.bytes)
        report.result = Result.COMMITTED
        return
    report.memory_complete_ms = float(msg.elapsed_ms)
    report.lazy_faults = msg.faults
    report.lazy_fault_wait_ms = float(msg.fault_wait_ms)
    report.lazy_fault_max_ms = float(msg.fault_max_ms)
    report.count_pages(msg.bytes)
    report.result = Result.COMMITTED
