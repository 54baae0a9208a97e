"""The DESTINATION driver replayed: recorded event sequences in, the actions out.

Every mode's happy path (cold, post-copy, pre-copy, hybrid) and every failure transition of
the DESTINATION phase table, without I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from ferryman.migration.destination_driver import (
    LAZY_START_AFTER,
    AbortAsked,
    Act,
    Action,
    CleanUp,
    CommitAsked,
    DestinationDriver,
    Do,
    Enter,
    Event,
    Failed,
    FileReceived,
    Finish,
    IterateAsked,
    PagesFetched,
    PlanRefused,
    Prepared,
    RestoreAsked,
    RestoreDone,
    RestoreFailed,
    SendFailed,
    SourceLost,
    TransferFailed,
)
from ferryman.migration.phases import DESTINATION_TABLE, DestinationPhase

D = DestinationPhase
READ = Do(Act.READ_NEXT)
FILES = [FileReceived(""), FileReceived("inventory.img"), FileReceived(LAZY_START_AFTER),
         FileReceived("core-1.img")]
START: list[Action] = [Enter(D.READY), Do(Act.SEND_READY), Enter(D.RECEIVING), READ]
RESTORE: list[Action] = [Enter(D.RESTORING), Do(Act.RESTORE)]
HOLD: list[Action] = [Do(Act.HOLD), Enter(D.RESTORED), Do(Act.SEND_RESTORED),
                      Do(Act.AWAIT_DECISION)]
COMMIT: list[Action] = [Do(Act.RESUME), Enter(D.COMMITTED), Do(Act.SEND_COMMITTED)]
DONE: list[Action] = [Enter(D.DONE), Do(Act.RECORD_DONE), Do(Act.HANG_UP),
                      CleanUp(keep_logs=True), Finish(D.DONE)]
TAIL: list[Action] = [Enter(D.FETCHING_PAGES), Do(Act.FETCH_PAGES)]


def replay(driver: DestinationDriver, events: Iterable[Event]) -> list[Action]:
    out: list[Action] = []
    for event in events:
        out += driver.handle(event)
    return out


def test_cold() -> None:
    d = DestinationDriver(lazy=False)
    acts = replay(d, [Prepared(), *FILES, RestoreAsked(), RestoreDone(99), CommitAsked()])
    assert acts == [*START, READ, READ, READ, READ, *RESTORE, *HOLD, *COMMIT, *DONE]
    assert d.done
    assert d.handle(CommitAsked()) == ()


def test_postcopy_starts_the_lazy_daemon_once_its_images_are_here() -> None:
    d = DestinationDriver(lazy=True)
    acts = replay(d, [Prepared(), *FILES, RestoreAsked(), RestoreDone(99), CommitAsked(),
                      PagesFetched()])
    assert acts == [*START, READ, READ, Do(Act.START_LAZY_EARLY), READ, READ, *RESTORE,
                    *HOLD, *COMMIT, *TAIL, Do(Act.SEND_PAGES_COMPLETE), *DONE]


def test_precopy_answers_every_iterate_then_restores_cold() -> None:
    d = DestinationDriver(lazy=False)
    acts = replay(d, [Prepared(), IterateAsked(2), FileReceived("pre-1.pagemap-1.img"),
                      IterateAsked(3, final=True), *FILES, RestoreAsked(), RestoreDone(7),
                      CommitAsked()])
    answer = [Do(Act.ANSWER_ITERATE), READ]
    assert acts == [*START, *answer, READ, *answer, READ, READ, READ, READ, *RESTORE, *HOLD,
                    *COMMIT, *DONE]


def test_hybrid_lazy_final_set_fetches_pages_without_the_early_daemon() -> None:
    d = DestinationDriver(lazy=False)
    acts = replay(d, [Prepared(), IterateAsked(2, final=True, lazy=True), *FILES,
                      RestoreAsked(), RestoreDone(7), CommitAsked(), PagesFetched()])
    assert Do(Act.START_LAZY_EARLY) not in acts  # the Plan named no page server
    assert acts[-(3 + len(DONE)):] == [*TAIL, Do(Act.SEND_PAGES_COMPLETE), *DONE]


# -- failures ---------------------------------------------------------------------------

REPORT_FAILURE = [CleanUp(), Enter(D.CLEANED)]


def test_refused_plan() -> None:
    d = DestinationDriver(lazy=False)
    assert replay(d, [PlanRefused("cpu")]) == [CleanUp(), Enter(D.REFUSED),
                                               Do(Act.SEND_REFUSED), Finish(D.REFUSED)]


def test_bad_image_file_is_answered_with_failed_then_the_abort_awaited() -> None:
    d = DestinationDriver(lazy=False)
    acts = replay(d, [Prepared(), FileReceived(""), TransferFailed("checksum")])
    assert acts[-5:] == [*REPORT_FAILURE, SendFailed("checksum"), Do(Act.AWAIT_ABORT),
                         Finish(D.CLEANED)]


def test_failed_restore() -> None:
    d = DestinationDriver(lazy=False)
    acts = replay(d, [Prepared(), RestoreAsked(), RestoreFailed()])
    assert acts[-5:] == [*REPORT_FAILURE, SendFailed("restore"), Do(Act.AWAIT_ABORT),
                         Finish(D.CLEANED)]


@pytest.mark.parametrize(("restored", "phase"), [(False, D.CLEANED), (True, D.KILLED)])
def test_abort(restored: bool, phase: DestinationPhase) -> None:
    d = DestinationDriver(lazy=False)
    events: list[Event] = [Prepared(), RestoreAsked(), RestoreDone(5)] if restored \
        else [Prepared(), FileReceived("")]
    replay(d, events)
    assert replay(d, [AbortAsked()]) == [CleanUp(), Enter(phase), Do(Act.SEND_ABORTED),
                                         Finish(phase)]


def test_source_lost_after_restored_keeps_the_tree_stopped() -> None:
    d = DestinationDriver(lazy=False)
    replay(d, [Prepared(), RestoreAsked(), RestoreDone(5)])
    assert replay(d, [SourceLost()]) == [Enter(D.ORPHANED), Do(Act.KEEP_ORPHAN),
                                         Finish(D.ORPHANED)]


def test_source_lost_after_a_lazy_restore_kills_the_tree() -> None:
    d = DestinationDriver(lazy=True)
    replay(d, [Prepared(), RestoreAsked(), RestoreDone(5)])
    assert replay(d, [SourceLost()]) == [Enter(D.KILLED), CleanUp(), Finish(D.KILLED)]


def test_broken_page_tail_is_lost() -> None:
    d = DestinationDriver(lazy=True)
    replay(d, [Prepared(), RestoreAsked(), RestoreDone(5), CommitAsked()])
    assert replay(d, [Failed("CriuError", during=Do(Act.FETCH_PAGES))]) == [
        Enter(D.LOST), Do(Act.KILL_TAIL), CleanUp(keep_logs=True), Finish(D.LOST)]


def test_a_failure_while_holding_the_restored_tree_rewinds_to_restoring() -> None:
    """HOLD comes before RESTORED in its batch: its failure cleans up (the tree's identity
    is unknown), never orphans."""
    d = DestinationDriver(lazy=False)
    replay(d, [Prepared(), RestoreAsked(), RestoreDone(5)])
    assert d.phase is D.RESTORED
    assert replay(d, [Failed("NoSuchProcess", during=Do(Act.HOLD))]) == [
        CleanUp(), Enter(D.CLEANED), Finish(D.CLEANED)]


def test_a_failed_resume_orphans() -> None:
    d = DestinationDriver(lazy=False)
    replay(d, [Prepared(), RestoreAsked(), RestoreDone(5), CommitAsked()])
    assert replay(d, [Failed("OSError", during=Do(Act.RESUME))]) == [
        Enter(D.ORPHANED), Do(Act.KEEP_ORPHAN), Finish(D.ORPHANED)]


FAILURES: list[tuple[bool, list[Event]]] = [
    (False, [PlanRefused("busy")]),
    (False, [Prepared(), Failed("PeerLost", during=Do(Act.SEND_READY))]),
    (False, [Prepared(), Failed("PeerLost", during=READ)]),
    (False, [Prepared(), RestoreAsked(), RestoreFailed()]),
    (False, [Prepared(), RestoreAsked(), RestoreDone(1), AbortAsked()]),
    (False, [Prepared(), RestoreAsked(), RestoreDone(1), SourceLost()]),
    (False, [Prepared(), RestoreAsked(), RestoreDone(1), CommitAsked(),
             Failed("PeerLost", during=Do(Act.SEND_COMMITTED))]),
    (True, [Prepared(), RestoreAsked(), RestoreDone(1), CommitAsked(),
            Failed("CriuError", during=Do(Act.FETCH_PAGES))]),
]
STREAMED_FAILURES: list[list[Event]] = [
    [Prepared(), RestoreAsked(), RestoreDone(1), AbortAsked()],  # while the pages came
    [Prepared(), RestoreAsked(), RestoreDone(1), Failed("CriuError",
                                                        during=Do(Act.FETCH_PAGES))],
]


def test_every_failure_edge_of_the_table_is_replayed() -> None:
    seen: set[tuple[DestinationPhase, DestinationPhase]] = set()
    for events in STREAMED_FAILURES:
        d = DestinationDriver(lazy=False, streamed=True)
        for event in events:
            d.handle(event)
            seen |= {(before, a.phase) for a, before in d.batch if isinstance(a, Enter)}
        assert d.done
    for lazy, events in FAILURES:
        d = DestinationDriver(lazy=lazy)
        for event in events:
            d.handle(event)
            seen |= {(before, a.phase) for a, before in d.batch if isinstance(a, Enter)}
        assert d.done
    wanted = {(p, q) for p, (_, bad) in DESTINATION_TABLE.items() for q in bad}
    assert wanted <= seen, wanted - seen


# -- a streamed cold restore: every page fetched into the stopped tree before Restored ----


def test_a_streamed_restore_fetches_every_page_before_it_says_restored() -> None:
    d = DestinationDriver(lazy=False, streamed=True)
    out = replay(d, [Prepared(), *FILES, RestoreAsked()])
    assert Do(Act.START_LAZY_EARLY) in out  # the daemon starts on pstree.img, as post-copy's
    assert replay(d, [RestoreDone(7)]) == [Do(Act.FETCH_PAGES)]
    assert d.phase is D.RESTORING  # no Restored before the last page
    assert replay(d, [PagesFetched()]) == HOLD
    assert replay(d, [CommitAsked()]) == [*COMMIT, Do(Act.SEND_PAGES_COMPLETE), *DONE]


def test_a_failed_fetch_is_a_failed_restore_the_source_rolls_back() -> None:
    d = DestinationDriver(lazy=False, streamed=True)
    replay(d, [Prepared(), RestoreAsked(), RestoreDone(7)])
    assert replay(d, [Failed("CriuError", during=Do(Act.FETCH_PAGES))]) == [
        CleanUp(), Enter(D.CLEANED), SendFailed("restore"), Do(Act.AWAIT_ABORT),
        Finish(D.CLEANED)]


def test_an_abort_while_the_pages_come_kills_the_tree() -> None:
    d = DestinationDriver(lazy=False, streamed=True)
    replay(d, [Prepared(), RestoreAsked(), RestoreDone(7)])
    assert replay(d, [AbortAsked()]) == [CleanUp(), Enter(D.KILLED), Do(Act.SEND_ABORTED),
                                         Finish(D.KILLED)]


def test_a_source_lost_after_a_streamed_restore_keeps_the_whole_tree_stopped() -> None:
    """Unlike post-copy's (KILLED: its memory is with the source), the tree has every page."""
    d = DestinationDriver(lazy=False, streamed=True)
    replay(d, [Prepared(), RestoreAsked(), RestoreDone(7), PagesFetched()])
    assert replay(d, [SourceLost()]) == [Enter(D.ORPHANED), Do(Act.KEEP_ORPHAN),
                                         Finish(D.ORPHANED)]
    lazy = DestinationDriver(lazy=True)
    replay(lazy, [Prepared(), RestoreAsked(), RestoreDone(7)])
    assert replay(lazy, [SourceLost()])[0] == Enter(D.KILLED)
