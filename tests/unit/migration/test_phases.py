"""The migration phase tables: every phase has a way out, illegal moves are refused."""

from __future__ import annotations

import itertools

import pytest

from ferryman.migration.phases import (
    DESTINATION_FINAL,
    DESTINATION_POINT_OF_NO_RETURN,
    DESTINATION_TABLE,
    SOURCE_FINAL,
    SOURCE_POINT_OF_NO_RETURN,
    SOURCE_TABLE,
    DestinationPhase,
    IllegalTransition,
    PhaseTracker,
    SourcePhase,
    reachable,
)

S = SourcePhase
D = DestinationPhase


def test_tables_cover_every_phase() -> None:
    assert set(SOURCE_TABLE) == set(SourcePhase)
    assert set(DESTINATION_TABLE) == set(DestinationPhase)


@pytest.mark.parametrize("phase", list(SourcePhase))
def test_every_source_phase_reaches_committed_or_rolled_back_or_an_end(phase: S) -> None:
    ends = reachable(SOURCE_TABLE, phase) & SOURCE_FINAL
    assert ends, f"{phase} is a dead end"
    if phase not in SOURCE_FINAL:
        assert SOURCE_TABLE[phase][1], f"{phase} has no failure exit"


@pytest.mark.parametrize("phase", list(DestinationPhase))
def test_every_destination_phase_has_a_way_out(phase: D) -> None:
    assert reachable(DESTINATION_TABLE, phase) & DESTINATION_FINAL
    if phase not in DESTINATION_FINAL:
        assert DESTINATION_TABLE[phase][1], f"{phase} has no failure exit"


def test_final_phases_have_no_successors() -> None:
    for p in SOURCE_FINAL:
        assert SOURCE_TABLE[p] == (frozenset(), frozenset())
    for d in DESTINATION_FINAL:
        assert DESTINATION_TABLE[d] == (frozenset(), frozenset())


def test_before_the_point_of_no_return_failure_always_resumes_the_source() -> None:
    before = reachable(SOURCE_TABLE, S.HELLO) - reachable(SOURCE_TABLE,
                                                          SOURCE_POINT_OF_NO_RETURN)
    for phase in before - SOURCE_FINAL - {S.RESUMING}:
        # Failure leads to FAILED (nothing frozen), ROLLED_BACK or RESUMING, never LOST
        # (only a resume that itself fails can lose the workload).
        failures = SOURCE_TABLE[phase][1]
        assert failures <= {S.FAILED, S.ROLLED_BACK, S.RESUMING}, phase
    # Once committed, the workload cannot come back to the source.
    assert S.ROLLED_BACK not in reachable(SOURCE_TABLE, SOURCE_POINT_OF_NO_RETURN)


def test_destination_never_resumes_before_commit() -> None:
    # The only road to a running tree (COMMITTED) passes through RESTORED.
    for phase, (ok, _) in DESTINATION_TABLE.items():
        if DESTINATION_POINT_OF_NO_RETURN in ok:
            assert phase == D.RESTORED
    # An uncommitted restored tree ends ORPHANED or KILLED, never resumed by itself.
    assert DESTINATION_TABLE[D.RESTORED][1] == {D.KILLED, D.ORPHANED}


def test_cold_migration_replays_as_a_list_of_phases() -> None:
    clock = itertools.count()
    t = PhaseTracker(SOURCE_TABLE, S.HELLO, lambda: float(next(clock)))
    for p in (S.PLANNED, S.FREEZING, S.DUMPED, S.TRANSFERRING, S.AWAIT_RESTORE, S.COMMITTED,
              S.DONE):
        t.advance(p)
    assert t.phase == S.DONE
    assert [d[0] for d in t.durations()] == ["HELLO", "PLANNED", "FREEZING", "DUMPED",
                                             "TRANSFERRING", "AWAIT_RESTORE", "COMMITTED"]
    assert all(d[2] == 1.0 for d in t.durations())


def test_failed_restore_replays_to_rolled_back() -> None:
    t = PhaseTracker(SOURCE_TABLE, S.HELLO, lambda: 0.0)
    for p in (S.PLANNED, S.FREEZING, S.DUMPED, S.TRANSFERRING, S.AWAIT_RESTORE):
        t.advance(p)
    assert t.failure_target() == S.RESUMING
    t.advance(S.RESUMING)
    t.advance(S.ROLLED_BACK)
    assert t.entered(S.RESUMING) == 0.0


def test_postcopy_replays_through_serving_pages() -> None:
    t = PhaseTracker(SOURCE_TABLE, S.HELLO, lambda: 0.0)
    for p in (S.PLANNED, S.FREEZING, S.DUMPED, S.TRANSFERRING, S.AWAIT_RESTORE, S.COMMITTED,
              S.SERVING_PAGES):
        t.advance(p)
    assert t.failure_target() == S.LOST


@pytest.mark.parametrize(("frm", "to"), [
    (S.HELLO, S.FREEZING), (S.FREEZING, S.COMMITTED), (S.COMMITTED, S.RESUMING),
    (S.DONE, S.HELLO), (S.SERVING_PAGES, S.ROLLED_BACK),
])
def test_illegal_source_transitions_are_refused(frm: S, to: S) -> None:
    t = PhaseTracker(SOURCE_TABLE, frm, lambda: 0.0)
    with pytest.raises(IllegalTransition):
        t.advance(to)
    assert t.phase == frm
