"""A report's phases as a timeline: bars, the downtime span, the post-copy page tail. Pure.

The source records a phase when it leaves it, so the final phase (DONE, ROLLED_BACK, ...)
has no entry of its own: it began when the last recorded phase ended. The workload stops at
FREEZING and runs again when the migration reaches DONE (cold), SERVING_PAGES (post-copy:
the destination runs it while its memory still arrives) or ROLLED_BACK (resumed here).
The source enters FREEZING a moment before CRIU actually freezes the workload; when the
report has ``downtime_ms`` (measured from the freeze itself) the downtime span starts that
long before the workload ran again, so picture, summary and report show the same number;
newer reports say when the freeze began (``freeze_start_ms``), and the span starts there
(the cold source reaches DONE only after CRIU's or runc's clean-up, which is not downtime).
With ``--probe`` the client's longest wait is a span of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.report.load import ReportView

FINAL_PHASE = {"committed": "DONE", "rolled_back": "ROLLED_BACK", "lost": "LOST",
               "failed": "FAILED"}
RESUMED_AT = ("SERVING_PAGES", "DONE", "ROLLED_BACK")  # the workload runs again from here
FROZEN_FROM = "FREEZING"


@dataclass(frozen=True, slots=True)
class Bar:
    """One stay in one phase. ``repeat`` counts stays in the same phase (ITERATING #2)."""

    phase: str
    start_ms: float
    end_ms: float
    repeat: int = 1

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass(frozen=True, slots=True)
class Span:
    start_ms: float
    end_ms: float

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass(frozen=True, slots=True)
class Timeline:
    bars: tuple[Bar, ...]
    rows: tuple[str, ...]       # phase names in order of first appearance
    end_ms: float               # when the last recorded phase ended
    final_phase: str | None     # the phase the migration ended in (no bar of its own)
    downtime: Span | None       # FREEZING until the workload ran again
    resumed: bool               # False: the workload never ran again (the span is open)
    page_tail: Span | None      # post-copy: from resuming until every page had arrived
    client_gap: Span | None = None  # --probe: a client's longest wait for an answer

    def bars_of(self, phase: str) -> tuple[Bar, ...]:
        return tuple(b for b in self.bars if b.phase == phase)

    def start_of(self, phase: str) -> float | None:
        """When ``phase`` was first entered (the final phase included)."""
        if phase == self.final_phase:
            first = next((b for b in self.bars if b.phase == phase), None)
            return first.start_ms if first else self.end_ms
        return next((b.start_ms for b in self.bars if b.phase == phase), None)


def build_timeline(view: ReportView) -> Timeline:
    r = view.report
    bars: list[Bar] = []
    seen: dict[str, int] = {}
    for p in r.phases:
        seen[p.phase] = seen.get(p.phase, 0) + 1
        bars.append(Bar(p.phase, p.start_ms, p.start_ms + max(p.duration_ms, 0.0),
                        seen[p.phase]))
    end_ms = max((b.end_ms for b in bars), default=0.0)
    final = FINAL_PHASE.get(r.result)
    partial = Timeline(tuple(bars), tuple(seen), end_ms, final, None, True, None)

    downtime: Span | None = None
    resumed = True
    frozen = partial.start_of(FROZEN_FROM)
    if frozen is not None:
        back = [t for t in (partial.start_of(p) for p in RESUMED_AT) if t is not None]
        if back:
            end = min(back)
            start = frozen
            if r.downtime_ms is not None and r.freeze_start_ms is not None:
                start, end = r.freeze_start_ms, r.freeze_start_ms + r.downtime_ms
            elif r.downtime_ms is not None and 0 < r.downtime_ms <= end - frozen:
                start = end - r.downtime_ms
            downtime = Span(start, end)
        elif r.downtime_ms is not None:
            downtime = Span(frozen, frozen + r.downtime_ms)
        else:
            downtime, resumed = Span(frozen, end_ms), False

    page_tail: Span | None = None
    if r.memory_complete_ms is not None:
        resumed_at = partial.start_of("SERVING_PAGES")
        if resumed_at is None and downtime is not None and resumed:
            resumed_at = downtime.end_ms
        if resumed_at is not None:
            page_tail = Span(resumed_at, resumed_at + r.memory_complete_ms)
    gap = None
    if r.probe is not None:
        gap = Span(r.probe.max_gap_start_ms, r.probe.max_gap_start_ms + r.probe.max_gap_ms)
    return Timeline(tuple(bars), tuple(seen), end_ms, final, downtime, resumed, page_tail,
                    gap)
