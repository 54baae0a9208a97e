"""Migration phase tables for both roles, and a tracker that enforces them.

Pure: no I/O. The tables are the specification; ``PhaseTracker`` refuses any transition
that is not in them and records when each phase began (the clock is injected).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

P = TypeVar("P", bound=StrEnum)


class SourcePhase(StrEnum):
    HELLO = "HELLO"
    PLANNED = "PLANNED"
    PRESYNC = "PRESYNC"
    ITERATING = "ITERATING"
    FREEZING = "FREEZING"
    DUMPED = "DUMPED"
    TRANSFERRING = "TRANSFERRING"
    AWAIT_RESTORE = "AWAIT_RESTORE"
    COMMITTED = "COMMITTED"
    SERVING_PAGES = "SERVING_PAGES"
    DONE = "DONE"
    RESUMING = "RESUMING"
    ROLLED_BACK = "ROLLED_BACK"
    FAILED = "FAILED"
    LOST = "LOST"


class DestinationPhase(StrEnum):
    HELLO = "HELLO"
    READY = "READY"
    RECEIVING = "RECEIVING"
    RESTORING = "RESTORING"
    RESTORED = "RESTORED"
    COMMITTED = "COMMITTED"
    FETCHING_PAGES = "FETCHING_PAGES"
    DONE = "DONE"
    REFUSED = "REFUSED"
    CLEANED = "CLEANED"
    KILLED = "KILLED"
    ORPHANED = "ORPHANED"  # restored, source lost before commit: kept stopped for an operator
    LOST = "LOST"


S = SourcePhase
D = DestinationPhase

# phase -> (phases reachable on success, phases reachable on failure)
SOURCE_TABLE: Mapping[SourcePhase, tuple[frozenset[SourcePhase], frozenset[SourcePhase]]] = {
    S.HELLO: (frozenset({S.PLANNED}), frozenset({S.FAILED})),
    S.PLANNED: (frozenset({S.PRESYNC, S.ITERATING, S.FREEZING}), frozenset({S.FAILED})),
    S.PRESYNC: (frozenset({S.ITERATING, S.FREEZING}), frozenset({S.FAILED})),
    S.ITERATING: (frozenset({S.ITERATING, S.FREEZING}), frozenset({S.ROLLED_BACK})),
    S.FREEZING: (frozenset({S.DUMPED}), frozenset({S.RESUMING})),
    S.DUMPED: (frozenset({S.TRANSFERRING}), frozenset({S.RESUMING})),
    S.TRANSFERRING: (frozenset({S.AWAIT_RESTORE}), frozenset({S.RESUMING})),
    S.AWAIT_RESTORE: (frozenset({S.COMMITTED}), frozenset({S.RESUMING})),
    S.COMMITTED: (frozenset({S.DONE, S.SERVING_PAGES}), frozenset({S.LOST})),
    S.SERVING_PAGES: (frozenset({S.DONE}), frozenset({S.LOST})),
    S.RESUMING: (frozenset({S.ROLLED_BACK}), frozenset({S.LOST})),
    S.DONE: (frozenset(), frozenset()),
    S.ROLLED_BACK: (frozenset(), frozenset()),
    S.FAILED: (frozenset(), frozenset()),
    S.LOST: (frozenset(), frozenset()),
}
SOURCE_FINAL = frozenset({S.DONE, S.ROLLED_BACK, S.FAILED, S.LOST})
SOURCE_POINT_OF_NO_RETURN = S.COMMITTED

DESTINATION_TABLE: Mapping[
    DestinationPhase, tuple[frozenset[DestinationPhase], frozenset[DestinationPhase]]
] = {
    D.HELLO: (frozenset({D.READY}), frozenset({D.REFUSED})),
    D.READY: (frozenset({D.RECEIVING}), frozenset({D.CLEANED})),
    D.RECEIVING: (frozenset({D.RESTORING}), frozenset({D.CLEANED})),
    # KILLED: a streamed restore's tree, aborted while its pages came (destination_driver)
    D.RESTORING: (frozenset({D.RESTORED}), frozenset({D.CLEANED, D.KILLED})),
    D.RESTORED: (frozenset({D.COMMITTED}), frozenset({D.KILLED, D.ORPHANED})),
    D.COMMITTED: (frozenset({D.DONE, D.FETCHING_PAGES}), frozenset({D.LOST})),
    D.FETCHING_PAGES: (frozenset({D.DONE}), frozenset({D.LOST})),
    D.DONE: (frozenset(), frozenset()),
    D.REFUSED: (frozenset(), frozenset()),
    D.CLEANED: (frozenset(), frozenset()),
    D.KILLED: (frozenset(), frozenset()),
    D.ORPHANED: (frozenset(), frozenset()),
    D.LOST: (frozenset(), frozenset()),
}
DESTINATION_FINAL = frozenset({D.DONE, D.REFUSED, D.CLEANED, D.KILLED, D.ORPHANED, D.LOST})
DESTINATION_POINT_OF_NO_RETURN = D.COMMITTED


class IllegalTransition(RuntimeError):
    """A bug: code asked for a phase change the table does not allow."""


@dataclass
class PhaseTracker(Generic[P]):
    """Current phase plus the time each phase began (seconds from the injected clock)."""

    table: Mapping[P, tuple[frozenset[P], frozenset[P]]]
    phase: P
    clock: Callable[[], float]
    history: list[tuple[P, float]] = field(default_factory=list)
    on_enter: Callable[[P], None] | None = None  # test-only (testhooks.py): after each entry

    def __post_init__(self) -> None:
        self.history.append((self.phase, self.clock()))
        if self.on_enter is not None:
            self.on_enter(self.phase)

    def advance(self, new: P) -> None:
        ok, bad = self.table[self.phase]
        if new not in ok and new not in bad:
            raise IllegalTransition(f"{self.phase} -> {new}")
        self.phase = new
        self.history.append((new, self.clock()))
        if self.on_enter is not None:
            self.on_enter(new)

    def failure_target(self) -> P | None:
        """Where a failure now leads (the single failure successor), if anywhere."""
        _, bad = self.table[self.phase]
        return next(iter(bad)) if len(bad) == 1 else None

    def entered(self, phase: P) -> float | None:
        """When ``phase`` was first entered."""
        return next((t for p, t in self.history if p == phase), None)

    def durations(self) -> list[tuple[str, float, float]]:
        """(phase, start, seconds) for every phase left so far."""
        out: list[tuple[str, float, float]] = []
        for (p, t0), (_, t1) in zip(self.history, self.history[1:], strict=False):
            out.append((str(p), t0, t1 - t0))
        return out


def reachable(table: Mapping[P, tuple[frozenset[P], frozenset[P]]], start: P) -> set[P]:
    """Every phase reachable from ``start`` (used by tests: every phase has a way out)."""
    seen = {start}
    todo = [start]
    while todo:
        ok, bad = table[todo.pop()]
        for nxt in ok | bad:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen
