"""Pre-copy convergence policies: after each ``pre-dump``, ITERATE, FINAL or SWITCH_TO_POSTCOPY.

Pure: no I/O, no clock. The caller runs a pre-dump, turns CRIU's ``stats-dump`` counters and its
own measured duration into an :class:`IterationStats` (:func:`from_criu_stats`), appends it to
the history and asks the policy. The loop is::

    history = []
    while (v := policy.decide(history, env)).decision is Decision.ITERATE:
        history.append(run_one_pre_dump(index=len(history) + 1))

so ``decide([])`` is asked first (every policy says ITERATE: nothing copied yet) and the number of
pre-dumps is ``len(history)`` when the loop ends. :func:`replay` runs exactly this loop over a
recorded list, so a migration's iteration phase replays in a unit test.

Counting is exact: ``max_iterations=N`` means N pre-dumps, never N+1 (p.haul's loop) or 2N
(Incus, which counts each pass twice).
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ferryman.host.pages import PAGE_SIZE

__all__ = [
    "BudgetPolicy",
    "ConvergencePolicy",
    "Decision",
    "Environment",
    "IterationStats",
    "LxdPolicy",
    "PhaulPolicy",
    "Ruling",
    "TransferFit",
    "final_dirty_pages",
    "fit_transfer",
    "from_criu_stats",
    "replay",
]



@dataclass(frozen=True, slots=True)
class IterationStats:
    """One pre-dump: ``index`` (1-based), CRIU's page counters, bytes sent and our own duration.

    ``pages_skipped`` is CRIU's ``pages_skipped_parent``: pages unchanged since the previous
    pre-dump (always 0 for the first). ``seconds`` is the caller's wall-clock measurement.
    """

    index: int
    pages_written: int
    pages_skipped: int
    pages_scanned: int
    bytes: int
    seconds: float

    def __post_init__(self) -> None:
        if self.index < 1:
            raise ValueError(f"index is 1-based, got {self.index}")
        for name in ("pages_written", "pages_skipped", "pages_scanned", "bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"seconds must be finite and >= 0, got {self.seconds}")


def from_criu_stats(
    index: int, stats: Mapping[str, int], seconds: float, *, page_size: int = PAGE_SIZE
) -> IterationStats:
    """Build :class:`IterationStats` from CRIU's ``stats-dump`` counters; missing keys count 0.

    ``bytes`` is ``pages_written * page_size``: what the pre-dump streamed to the page server.
    """
    written = int(stats.get("pages_written", 0))
    return IterationStats(
        index=index,
        pages_written=written,
        pages_skipped=int(stats.get("pages_skipped_parent", 0)),
        pages_scanned=int(stats.get("pages_scanned", 0)),
        bytes=written * page_size,
        seconds=seconds,
    )


class Decision(enum.StrEnum):
    ITERATE = "ITERATE"
    FINAL = "FINAL"
    SWITCH_TO_POSTCOPY = "SWITCH_TO_POSTCOPY"


@dataclass(frozen=True, slots=True)
class Ruling:
    """A policy's ruling after each pre-dump (not the pre-flight's ``verdict.Verdict``): what
    to do next, why (one line for the report), and the downtime predicted, if any.

    ``over_budget`` is set when the policy finishes knowing the downtime budget will be missed:
    the caller writes a warning into the report (a field, so nobody parses ``reason``).
    """

    decision: Decision
    reason: str
    predicted_downtime_ms: float | None = None
    over_budget: bool = False


@dataclass(frozen=True, slots=True)
class Environment:
    """Facts measured by the caller, outside the iteration history.

    ``fixed_cost_ms``: the downtime that does not depend on dirty memory (freeze, non-memory
    dump, image transfer, restore). ``bandwidth_bytes_per_s``: a separate link measurement;
    ``None`` makes :class:`BudgetPolicy` measure it from the pre-dumps themselves.
    """

    page_size: int = PAGE_SIZE
    fixed_cost_ms: float = 150.0
    bandwidth_bytes_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {self.page_size}")
        if not (math.isfinite(self.fixed_cost_ms) and self.fixed_cost_ms >= 0):
            raise ValueError(f"fixed_cost_ms must be finite and >= 0, got {self.fixed_cost_ms}")
        bw = self.bandwidth_bytes_per_s
        if bw is not None and not (math.isfinite(bw) and bw > 0):
            raise ValueError(f"bandwidth_bytes_per_s must be finite and > 0, got {bw}")


class ConvergencePolicy(Protocol):
    def decide(self, history: Sequence[IterationStats], env: Environment) -> Ruling: ...


_START = Ruling(Decision.ITERATE, "no pre-dump yet")


def _check_history(history: Sequence[IterationStats]) -> None:
    for pos, it in enumerate(history, start=1):
        if it.index != pos:
            raise ValueError(f"history[{pos - 1}] has index {it.index}, expected {pos}")


def _check_max(max_iterations: int) -> None:
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")


@dataclass(frozen=True, slots=True)
class LxdPolicy:
    """LXD's ``migration.incremental.memory.goal`` / ``.iterations`` (defaults 70 and 10).

    FINAL when at least ``goal_percent`` of the pages seen by the last pre-dump were unchanged
    since the one before (``skipped / (skipped + written) >= goal / 100``, exact arithmetic, as
    LXD's documentation says "equal to or greater"; LXD's code compares a truncated integer with
    ``>``). The first pre-dump has no predecessor and never meets the goal. A later pre-dump that
    saw no pages at all has nothing left to copy and meets it (LXD would divide by zero).
    Otherwise FINAL after exactly ``max_iterations`` pre-dumps.
    """

    max_iterations: int = 10
    goal_percent: float = 70

    def __post_init__(self) -> None:
        _check_max(self.max_iterations)
        if not (0 < self.goal_percent <= 100):
            raise ValueError(f"goal_percent must be in (0, 100], got {self.goal_percent}")

    def decide(self, history: Sequence[IterationStats], env: Environment) -> Ruling:
        _check_history(history)
        if not history:
            return _START
        last = history[-1]
        total = last.pages_skipped + last.pages_written
        if last.index >= 2 and last.pages_skipped * 100 >= self.goal_percent * total:
            share = 100.0 if total == 0 else 100 * last.pages_skipped / total
            return Ruling(
                Decision.FINAL,
                f"{share:.1f}% of pages unchanged since pre-dump {last.index - 1}"
                f" >= goal {self.goal_percent}%",
            )
        if last.index >= self.max_iterations:
            return Ruling(Decision.FINAL, f"{last.index} pre-dumps = max_iterations")
        return Ruling(Decision.ITERATE, f"goal {self.goal_percent}% not met")


@dataclass(frozen=True, slots=True)
class PhaulPolicy:
    """p.haul's ``phaul_iter_max = 8``, ``phaul_iter_min_size = 64``, ``phaul_iter_grow_max = 10``.

    FINAL when the last pre-dump wrote ``<= min_pages`` pages (the rest is small: dump it
    frozen); when it wrote more than ``max_growth_percent`` % more pages than the one before
    (the workload dirties faster than we copy: ``written * 100 > prev * (100 + growth)``, so
    exactly +10 % still iterates); or after exactly ``max_iterations`` pre-dumps.
    """

    max_iterations: int = 8
    min_pages: int = 64
    max_growth_percent: int = 10

    def __post_init__(self) -> None:
        _check_max(self.max_iterations)
        if self.min_pages < 0 or self.max_growth_percent < 0:
            raise ValueError("min_pages and max_growth_percent must be >= 0")

    def decide(self, history: Sequence[IterationStats], env: Environment) -> Ruling:
        _check_history(history)
        if not history:
            return _START
        last = history[-1]
        if last.pages_written <= self.min_pages:
            return Ruling(
                Decision.FINAL, f"pre-dump wrote {last.pages_written} <= {self.min_pages} pages"
            )
        if len(history) >= 2:
            prev = history[-2].pages_written
            if last.pages_written * 100 > prev * (100 + self.max_growth_percent):
                return Ruling(
                    Decision.FINAL,
                    f"pre-dump wrote {last.pages_written} pages, more than"
                    f" {prev} + {self.max_growth_percent}%",
                )
        if last.index >= self.max_iterations:
            return Ruling(Decision.FINAL, f"{last.index} pre-dumps = max_iterations")
        return Ruling(Decision.ITERATE, f"pre-dump wrote {last.pages_written} pages")


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetPolicy:
    """Ours: finish as soon as the predicted final downtime fits ``max_downtime_ms``.

    Model. ``predicted = dirty * page_size / bandwidth + env.fixed_cost_ms``, where

    * ``dirty`` is :func:`final_dirty_pages`: the last pre-dump's ``pages_written`` scaled by
      how much shorter the last pre-dump was than the one before (the final dump copies what
      was dirtied during the last pre-dump, at the rate seen during the one before). After the
      first pre-dump it is the whole memory, so "fits at once" means "cold would have fitted";
    * ``bandwidth`` is ``env.bandwidth_bytes_per_s`` when measured, else the median of
      ``bytes / seconds`` over the last ``bandwidth_window`` pre-dumps (the median ignores one
      outlier; small pre-dumps include their fixed overhead, which errs on the safe side).

    Rules, in order: FINAL when ``predicted <= max_downtime_ms``. FINAL (``over_budget``) when
    a later pre-dump wrote nothing: the fixed cost alone misses the budget. Stalled, when the
    smallest dirty set of the last ``stall_window`` pre-dumps is not at least
    ``min_shrink_percent`` % below the smallest one before them (needs ``stall_window + 1``
    pre-dumps; also catches oscillation): SWITCH_TO_POSTCOPY if ``postcopy_allowed``, else
    FINAL with ``over_budget``. FINAL (``over_budget``) after exactly ``max_iterations``.
    Else ITERATE.
    """

    postcopy_allowed: bool
    max_downtime_ms: float = 300.0
    max_iterations: int = 30
    bandwidth_window: int = 3
    stall_window: int = 2
    min_shrink_percent: float = 10.0

    def __post_init__(self) -> None:
        _check_max(self.max_iterations)
        if not (math.isfinite(self.max_downtime_ms) and self.max_downtime_ms > 0):
            raise ValueError(f"max_downtime_ms must be finite and > 0, got {self.max_downtime_ms}")
        if self.bandwidth_window < 1 or self.stall_window < 1:
            raise ValueError("bandwidth_window and stall_window must be >= 1")
        if not (0 <= self.min_shrink_percent < 100):
            raise ValueError(
                f"min_shrink_percent must be in [0, 100), got {self.min_shrink_percent}"
            )

    def bandwidth(self, history: Sequence[IterationStats], env: Environment) -> float | None:
        """Bytes per second: the caller's measurement, else the recent pre-dumps' median."""
        if env.bandwidth_bytes_per_s is not None:
            return env.bandwidth_bytes_per_s
        rates = [
            it.bytes / it.seconds
            for it in history[-self.bandwidth_window :]
            if it.bytes > 0 and it.seconds > 0
        ]
        return statistics.median(rates) if rates else None

    def predict_ms(self, history: Sequence[IterationStats], env: Environment) -> float | None:
        """Predicted final-dump downtime in ms, or ``None`` before any bandwidth is known."""
        if not history:
            return None
        dirty_bytes = final_dirty_pages(history) * env.page_size
        if dirty_bytes == 0:
            return env.fixed_cost_ms
        bw = self.bandwidth(history, env)
        return None if bw is None else dirty_bytes / bw * 1000 + env.fixed_cost_ms

    def stalled(self, history: Sequence[IterationStats]) -> bool:
        """True when the dirty set stopped shrinking (see the class docstring)."""
        if len(history) <= self.stall_window:
            return False
        recent = min(it.pages_written for it in history[-self.stall_window :])
        best = min(it.pages_written for it in history[: -self.stall_window])
        return recent * 100 > best * (100 - self.min_shrink_percent)

    def decide(self, history: Sequence[IterationStats], env: Environment) -> Ruling:
        _check_history(history)
        if not history:
            return _START
        ms = self.predict_ms(history, env)
        budget = f"budget {self.max_downtime_ms:.0f} ms"
        if ms is not None and ms <= self.max_downtime_ms:
            return Ruling(Decision.FINAL, f"predicted {ms:.0f} ms fits {budget}", ms)
        guess = "unknown (no bandwidth measured)" if ms is None else f"{ms:.0f} ms"
        if len(history) >= 2 and history[-1].pages_written == 0:
            # nothing dirtied since the last pre-dump: the fixed cost alone is over budget,
            # and neither more pre-dumps nor lazy pages can lower it
            return Ruling(Decision.FINAL, f"nothing left to copy; predicted {guess}, "
                           f"{budget} will be missed", ms, True)
        stalled = self.stalled(history)
        if not stalled and len(history) < self.max_iterations:
            return Ruling(Decision.ITERATE, f"predicted {guess} over {budget}", ms)
        why = (
            f"dirty set stopped shrinking at {history[-1].pages_written} pages"
            if stalled
            else f"{len(history)} pre-dumps = max_iterations"
        )
        if stalled and self.postcopy_allowed:
            return Ruling(
                Decision.SWITCH_TO_POSTCOPY, f"{why}; predicted {guess} over {budget}", ms
            )
        return Ruling(
            Decision.FINAL, f"{why}; predicted {guess}, {budget} will be missed", ms, True
        )


@dataclass(frozen=True, slots=True)
class TransferFit:
    """``seconds = overhead_s + bytes / bytes_per_s``, fitted to the pre-dumps."""

    overhead_s: float
    bytes_per_s: float


def fit_transfer(history: Sequence[IterationStats]) -> TransferFit | None:
    """The pre-dumps' transfer rate and their fixed overhead, as a least-squares line.

    The first pre-dump (all memory) and the small later ones pin both ends, so a pre-dump of a
    few hundred pages (mostly overhead: CRIU's start, the TLS handshake with the page server,
    the page-map scan) no longer passes for a slow link. The overhead is kept at >= 0.
    ``None`` without two different sizes, or when time does not grow with bytes.
    """
    points = [(it.bytes, it.seconds) for it in history]
    if len({b for b, _ in points}) < 2:
        return None
    mb = statistics.fmean(b for b, _ in points)
    ms = statistics.fmean(s for _, s in points)
    var = sum((b - mb) ** 2 for b, _ in points)
    slope = sum((b - mb) * (s - ms) for b, s in points) / var
    if slope <= 0:
        return None
    return TransferFit(overhead_s=max(0.0, ms - slope * mb), bytes_per_s=1 / slope)


def final_dirty_pages(history: Sequence[IterationStats]) -> int:
    """Pages the final dump will write if it follows the last pre-dump now.

    Pre-dump ``n`` wrote what the workload dirtied while pre-dump ``n-1`` ran; the final dump
    writes what it dirties while pre-dump ``n`` runs. At the same rate that is
    ``written(n) * seconds(n) / seconds(n-1)``, never more than ``written(n)`` (a growing
    dirty set is not extrapolated upwards: the other rules handle it). With one pre-dump, or
    without durations: ``written(n)``.
    """
    if not history:
        return 0
    last = history[-1]
    if len(history) < 2 or history[-2].seconds <= 0:
        return last.pages_written
    scale = min(1.0, last.seconds / history[-2].seconds)
    return math.ceil(last.pages_written * scale)


def replay(
    policy: ConvergencePolicy, iterations: Iterable[IterationStats], env: Environment
) -> tuple[int, Ruling]:
    """Run the pre-copy loop over recorded pre-dumps: (pre-dumps run, the verdict that ended it).

    Raises ValueError when the record ends while the policy still says ITERATE.
    """
    history: list[IterationStats] = []
    source = iter(iterations)
    while (verdict := policy.decide(history, env)).decision is Decision.ITERATE:
        nxt = next(source, None)
        if nxt is None:
            raise ValueError(f"policy still iterating after {len(history)} recorded pre-dumps")
        history.append(nxt)
    return len(history), verdict
