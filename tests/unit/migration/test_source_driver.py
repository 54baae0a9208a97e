"""The SOURCE driver replayed: recorded event sequences in, the actions and the outcome out.

Every mode's happy path (cold, post-copy, pre-copy, hybrid; a process tree and a container)
and every failure transition of the SOURCE phase table the driver owns (all but HELLO's,
which is the gate's, before any driver exists). No I/O: this is the design's promise that a
migration can be replayed (docs/ARCHITECTURE.md, section 4).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from ferryman.migration.commit import Step
from ferryman.migration.convergence import IterationStats
from ferryman.migration.iterations import Convergence
from ferryman.migration.phases import SOURCE_TABLE, SourcePhase
from ferryman.migration.precopy_plan import PrecopyOptions
from ferryman.migration.source_driver import DUMP_END_GRACE_S, EARLY_END, SourceDriver
from ferryman.migration.source_events import (
    Abandon,
    Action,
    AnswerNotify,
    AskSet,
    AwaitDumpEnd,
    AwaitPagesComplete,
    AwaitRestored,
    CollectDumpStats,
    CommitSent,
    CommitStep,
    Committed,
    ContinueLeftStopped,
    DumpEnded,
    DumpGraceOver,
    Enter,
    Event,
    Failed,
    FinalSync,
    FindNetworkLock,
    Finish,
    FreezeWindow,
    GuardLeftStopped,
    KeepShared,
    KillSurvivors,
    KillTree,
    MoveAddressAway,
    Notified,
    Outcome,
    PagesComplete,
    PreDumpDone,
    PresyncDone,
    RecordIterations,
    RecordPages,
    RecordPrediction,
    Restored,
    RollBack,
    RolledBack,
    RunDump,
    RunPreDump,
    RunPresync,
    SendRestore,
    SetReady,
    ShipImages,
    Started,
    StopDump,
    ThawCgroup,
)

S = SourcePhase
PORT = 7001
DEST = 4242


def replay(driver: SourceDriver, events: Iterable[Event]) -> list[Action]:
    """Feed ``events`` in order; every action the driver asked for, in order."""
    out: list[Action] = []
    for event in events:
        out += driver.handle(event)
    return out


def phases(actions: Iterable[Action]) -> list[SourcePhase]:
    return [a.phase for a in actions if isinstance(a, Enter)]


def steps(*names: Step) -> list[Action]:
    return [CommitStep(s) for s in names]


def stats(index: int, written: int = 1000, skipped: int = 0) -> IterationStats:
    return IterationStats(index, written, skipped, written + skipped, written * 4096, 0.2)


def precopy(*, hybrid: bool = False, container: bool = False, iterations: int = 2
            ) -> SourceDriver:
    conv = Convergence(PrecopyOptions(policy="lxd", max_iterations=iterations),
                       postcopy_allowed=False, rss_bytes=64 << 20, container=container)
    return SourceDriver(lazy=hybrid, hybrid=hybrid, container=container, convergence=conv)


# the final dump, from CRIU's first notification to Restored
FREEZE = [Notified("pre-dump"), Notified("post-dump")]
COLD_FREEZE_ACTIONS: list[Action] = [
    FreezeWindow(), AnswerNotify(ok=True),
    Enter(S.DUMPED), Enter(S.TRANSFERRING), ShipImages(), KeepShared(),
    SendRestore(lazy=False), FindNetworkLock(), Enter(S.AWAIT_RESTORE), AwaitRestored(),
]
COLD_COMMIT_ACTIONS: list[Action] = [
    *steps(Step.QUEUE_STOP, Step.CHECK_HELD, Step.RELEASE_LOCK), Enter(S.COMMITTED),
    *steps(Step.MARK_COMMIT, Step.SEND_COMMIT_ANYWAY),
    *steps(Step.WATCH_COMMITTED, Step.FORWARD_INFLIGHT), AnswerNotify(ok=True),
]
COLD_END_ACTIONS: list[Action] = [
    ThawCgroup(), CollectDumpStats(lazy=False), KillSurvivors(), Enter(S.DONE),
    Finish(Outcome.DONE),
]
COLD_TAIL = [Restored(DEST), CommitSent(ok=True), DumpEnded(ok=True), Committed(DEST)]

LAZY_FREEZE = [Notified("pre-dump"), Notified("post-dump"), Notified("status-ready")]
LAZY_FREEZE_ACTIONS: list[Action] = [
    FreezeWindow(), AnswerNotify(ok=True),
    Enter(S.DUMPED), Enter(S.TRANSFERRING), ShipImages(), KeepShared(), AnswerNotify(ok=True),
    SendRestore(lazy=True), FindNetworkLock(), Enter(S.AWAIT_RESTORE), AwaitRestored(),
    AnswerNotify(ok=True),
]
LAZY_COMMIT_ACTIONS: list[Action] = [
    *steps(Step.QUEUE_STOP, Step.RELEASE_LOCK, Step.MARK_COMMIT, Step.SEND_COMMIT,
           Step.FORWARD_INFLIGHT),
    Enter(S.COMMITTED), CommitStep(Step.AWAIT_COMMITTED),
    Enter(S.SERVING_PAGES), AwaitPagesComplete(),
]
LAZY_END_ACTIONS: list[Action] = [
    KillTree(), RecordPages(), CollectDumpStats(lazy=True), Enter(S.DONE),
    Finish(Outcome.DONE),
]
LAZY_TAIL = [Restored(DEST), Committed(DEST), PagesComplete(512), DumpEnded(ok=True)]


# -- happy paths ----------------------------------------------------------------------


def test_cold_process() -> None:
    d = SourceDriver(lazy=False)
    acts = replay(d, [Started(PORT), *FREEZE, *COLD_TAIL])
    assert acts == [Enter(S.PLANNED), Enter(S.FREEZING), RunDump(lazy=False, port=PORT, parent=0),
                    *COLD_FREEZE_ACTIONS, *COLD_COMMIT_ACTIONS, *COLD_END_ACTIONS]
    assert d.outcome is Outcome.DONE
    assert d.handle(Committed(DEST)) == ()  # nothing after the outcome


def test_cold_committed_may_come_before_criu_ends() -> None:
    d = SourceDriver(lazy=False)
    acts = replay(d, [Started(PORT), *FREEZE, Restored(DEST), CommitSent(ok=True),
                      Committed(DEST)])
    assert d.outcome is None  # CRIU still destroys the source copy
    assert replay(d, [DumpEnded(ok=True)]) == COLD_END_ACTIONS
    assert acts[-1] == AnswerNotify(ok=True)


def test_cold_with_a_moving_address_hands_it_over_at_post_dump() -> None:
    d = SourceDriver(lazy=False, move_address=True)
    acts = replay(d, [Started(PORT), *FREEZE])
    assert acts[5:8] == [Enter(S.DUMPED), MoveAddressAway(), Enter(S.TRANSFERRING)]


def test_cold_container_is_presynced_then_synced_while_frozen() -> None:
    d = SourceDriver(lazy=False, container=True)
    acts = replay(d, [Started(PORT)])
    assert acts == [Enter(S.PLANNED), Enter(S.PRESYNC), RunPresync()]
    acts = replay(d, [PresyncDone(80.0), *FREEZE, *COLD_TAIL])
    assert FinalSync() in acts
    assert KeepShared() not in acts  # a same-host FIFO or socket name is runc's
    assert phases(acts) == [S.FREEZING, S.DUMPED, S.TRANSFERRING, S.AWAIT_RESTORE,
                            S.COMMITTED, S.DONE]
    assert d.outcome is Outcome.DONE


@pytest.mark.parametrize("lazy", [False, True])
def test_podman_container_has_no_presync_but_its_rootfs_changes_go_while_frozen(
        lazy: bool) -> None:
    d = SourceDriver(lazy=lazy, container=True, presync=False)
    acts = replay(d, [Started(0 if lazy else PORT)])
    assert acts == [Enter(S.PLANNED), Enter(S.FREEZING),
                    RunDump(lazy=lazy, port=0 if lazy else PORT, parent=0)]
    acts = replay(d, [*LAZY_FREEZE, *LAZY_TAIL] if lazy else [*FREEZE, *COLD_TAIL])
    assert FinalSync() in acts
    assert KeepShared() not in acts
    assert d.outcome is Outcome.DONE


def test_postcopy_process() -> None:
    d = SourceDriver(lazy=True)
    acts = replay(d, [Started(0), *LAZY_FREEZE, *LAZY_TAIL])
    assert acts == [Enter(S.PLANNED), Enter(S.FREEZING), RunDump(lazy=True, port=0, parent=0),
                    *LAZY_FREEZE_ACTIONS, *LAZY_COMMIT_ACTIONS, *LAZY_END_ACTIONS]
    assert d.outcome is Outcome.DONE


def test_postcopy_dump_may_end_before_restored_when_every_page_went() -> None:
    d = SourceDriver(lazy=True)
    replay(d, [Started(0), *LAZY_FREEZE])
    # the destination's answer decides; meanwhile the guard knows the tree waits stopped
    assert replay(d, [DumpEnded(ok=True)]) == [GuardLeftStopped()]
    acts = replay(d, [Restored(DEST), Committed(DEST), PagesComplete(3)])
    assert acts[-5:] == LAZY_END_ACTIONS


def test_postcopy_container() -> None:
    d = SourceDriver(lazy=True, container=True)
    acts = replay(d, [Started(0), PresyncDone(5.0), *LAZY_FREEZE, *LAZY_TAIL])
    assert phases(acts) == [S.PLANNED, S.PRESYNC, S.FREEZING, S.DUMPED, S.TRANSFERRING,
                            S.AWAIT_RESTORE, S.COMMITTED, S.SERVING_PAGES, S.DONE]
    assert FinalSync() in acts
    assert d.outcome is Outcome.DONE


def test_precopy_process() -> None:
    d = precopy()
    acts = replay(d, [Started(PORT)])
    assert acts == [Enter(S.PLANNED), Enter(S.ITERATING, quiet=True), RunPreDump(1, PORT)]
    acts = replay(d, [PreDumpDone(stats(1))])
    assert isinstance(acts[0], RecordPrediction)
    assert acts[1:] == [AskSet(2)]
    assert replay(d, [SetReady(7002, restore_bytes_per_s=1 << 30)]) == [
        Enter(S.ITERATING, quiet=True), RunPreDump(2, 7002)]
    acts = replay(d, [PreDumpDone(stats(2, written=900, skipped=100))])
    assert acts[1:] == [AskSet(3, final=True, lazy=False)]  # lxd: 2 = max_iterations
    acts = replay(d, [SetReady(7003)])
    record = acts[0]
    assert isinstance(record, RecordIterations)
    assert record.pre_dumps == 2
    assert not record.lazy
    assert record.summary.restore_bytes_per_s == 1 << 30
    assert record.summary.convergence.startswith("FINAL: 2 pre-dumps")
    assert acts[1:] == [Enter(S.FREEZING), RunDump(lazy=False, port=7003, parent=2)]
    acts = replay(d, [*FREEZE, *COLD_TAIL])
    assert acts == [*COLD_FREEZE_ACTIONS, *COLD_COMMIT_ACTIONS, *COLD_END_ACTIONS]
    assert d.outcome is Outcome.DONE


def test_hybrid_process_asks_a_lazy_final_set_and_serves_its_pages() -> None:
    d = precopy(hybrid=True, iterations=1)
    replay(d, [Started(PORT)])
    acts = replay(d, [PreDumpDone(stats(1))])
    assert acts[1:] == [AskSet(2, final=True, lazy=True)]
    acts = replay(d, [SetReady(0)])
    assert acts[1:] == [Enter(S.FREEZING), RunDump(lazy=True, port=0, parent=1)]
    acts = replay(d, [*LAZY_FREEZE, *LAZY_TAIL])
    assert acts == [*LAZY_FREEZE_ACTIONS, *LAZY_COMMIT_ACTIONS, *LAZY_END_ACTIONS]
    assert d.outcome is Outcome.DONE


def test_precopy_container_presyncs_before_the_first_pre_dump() -> None:
    d = precopy(container=True, iterations=1)
    assert replay(d, [Started(PORT)]) == [Enter(S.PLANNED), Enter(S.PRESYNC), RunPresync()]
    assert replay(d, [PresyncDone(120.0)]) == [Enter(S.ITERATING, quiet=True),
                                               RunPreDump(1, PORT)]
    assert d.convergence is not None
    assert d.convergence.presync_ms == 120.0  # the container's fixed cost, for the model
    acts = replay(d, [PreDumpDone(stats(1)), SetReady(7002), *FREEZE, *COLD_TAIL])
    assert RunPresync() not in acts  # once
    assert FinalSync() in acts
    assert d.outcome is Outcome.DONE


def test_hybrid_container() -> None:
    d = precopy(hybrid=True, container=True, iterations=1)
    acts = replay(d, [Started(PORT), PresyncDone(None), PreDumpDone(stats(1)), SetReady(0),
                      *LAZY_FREEZE, *LAZY_TAIL])
    assert phases(acts) == [S.PLANNED, S.PRESYNC, S.ITERATING, S.FREEZING, S.DUMPED,
                            S.TRANSFERRING, S.AWAIT_RESTORE, S.COMMITTED, S.SERVING_PAGES,
                            S.DONE]
    assert d.outcome is Outcome.DONE


def test_other_notifications_are_answered() -> None:
    d = SourceDriver(lazy=False)
    replay(d, [Started(PORT)])
    assert d.handle(Notified("status-ready")) == (AnswerNotify(ok=True),)  # cold: nothing


# -- failures -------------------------------------------------------------------------

ROLL_BACK = [Enter(S.RESUMING), RollBack()]
LAZY_ROLL_BACK = [StopDump(), ContinueLeftStopped(), *ROLL_BACK]
ROLLED_BACK = [Enter(S.ROLLED_BACK), Finish(Outcome.ROLLED_BACK)]
LOST = [StopDump(), KillTree(), Enter(S.LOST), Finish(Outcome.LOST)]


def failed(during: Action | None = None) -> Failed:
    return Failed("FerrymanError: boom", during=during)


def test_presync_failure_is_failed_nothing_frozen() -> None:
    d = SourceDriver(lazy=False, container=True)
    replay(d, [Started(PORT)])
    assert replay(d, [failed(RunPresync())]) == [Enter(S.FAILED, quiet=True),
                                                 Finish(Outcome.FAILED)]


def ruled_final_at_once() -> SourceDriver:
    """A policy that wants no pre-dump (none does today; the driver allows it)."""
    conv = Convergence(PrecopyOptions(policy="lxd", max_iterations=1), postcopy_allowed=False,
                       rss_bytes=1)
    conv.add(stats(1))
    return SourceDriver(lazy=False, convergence=conv)


def test_precopy_final_set_refused_before_any_pre_dump_is_failed_and_aborted() -> None:
    d = ruled_final_at_once()
    acts = replay(d, [Started(PORT)])
    assert acts == [Enter(S.PLANNED), AskSet(2, final=True, lazy=False)]
    assert replay(d, [failed(acts[-1])]) == [Abandon(), Enter(S.FAILED, quiet=True),
                                             Finish(Outcome.FAILED)]


@pytest.mark.parametrize("during", [RunPreDump(1, PORT), AskSet(2)])
def test_iteration_failure_abandons_pre_copy(during: Action) -> None:
    d = precopy()
    replay(d, [Started(PORT)])
    if isinstance(during, AskSet):
        replay(d, [PreDumpDone(stats(1))])
    assert replay(d, [failed(during)]) == [Abandon(), Enter(S.ROLLED_BACK, quiet=True),
                                           Finish(Outcome.ABANDONED)]


def test_cold_dump_failure_rolls_back() -> None:
    d = SourceDriver(lazy=False)
    acts = replay(d, [Started(PORT), Notified("pre-dump"), DumpEnded(ok=False),
                      RolledBack(survived=True)])
    assert acts[-4:] == [*ROLL_BACK, *ROLLED_BACK]
    assert d.outcome is Outcome.ROLLED_BACK


def test_a_tree_that_did_not_survive_the_roll_back_is_lost() -> None:
    d = SourceDriver(lazy=False)
    acts = replay(d, [Started(PORT), DumpEnded(ok=False), RolledBack(survived=False)])
    assert acts[-2:] == [Enter(S.LOST), Finish(Outcome.NOT_SURVIVED)]


@pytest.mark.parametrize(("during", "phase"), [
    (MoveAddressAway(), S.DUMPED), (ShipImages(), S.TRANSFERRING),
    (SendRestore(lazy=False), S.TRANSFERRING), (None, S.AWAIT_RESTORE),
    (CommitStep(Step.CHECK_HELD), S.AWAIT_RESTORE),
])
def test_cold_failure_while_criu_waits_is_its_answer_then_the_roll_back(
        during: Action | None, phase: SourcePhase) -> None:
    d = SourceDriver(lazy=False, move_address=True)
    replay(d, [Started(PORT), *FREEZE])
    if isinstance(during, CommitStep):
        replay(d, [Restored(DEST)])
    assert replay(d, [failed(during)]) == [AnswerNotify(ok=False)]
    assert d.phase is phase  # where the action that failed left it
    assert replay(d, [DumpEnded(ok=False), RolledBack(survived=True)]) == [*ROLL_BACK,
                                                                         *ROLLED_BACK]


def test_cold_commit_that_may_not_have_arrived_still_destroys_the_source_copy() -> None:
    d = SourceDriver(lazy=False)
    acts = replay(d, [Started(PORT), *FREEZE, Restored(DEST), CommitSent(ok=False)])
    assert acts[-2:] == [CommitStep(Step.FORWARD_INFLIGHT), AnswerNotify(ok=True)]
    assert CommitStep(Step.WATCH_COMMITTED) not in acts  # nothing to read
    assert replay(d, [DumpEnded(ok=True)]) == [ThawCgroup(), CollectDumpStats(lazy=False),
                                               KillSurvivors(), Finish(Outcome.UNCONFIRMED)]


def test_cold_commit_unconfirmed() -> None:
    d = SourceDriver(lazy=False)
    replay(d, [Started(PORT), *FREEZE, Restored(DEST), CommitSent(ok=True)])
    assert replay(d, [failed()]) == []  # CRIU ends first
    assert replay(d, [DumpEnded(ok=True)])[-1] == Finish(Outcome.UNCONFIRMED)
    assert d.phase is S.COMMITTED


def test_cold_criu_error_after_the_commit_is_no_roll_back() -> None:
    d = SourceDriver(lazy=False)
    replay(d, [Started(PORT), *FREEZE, Restored(DEST), CommitSent(ok=True)])
    assert replay(d, [DumpEnded(ok=False)]) == [CollectDumpStats(lazy=False), KillSurvivors()]
    assert replay(d, [Committed(DEST)]) == [Enter(S.DONE), Finish(Outcome.DONE)]


def test_cold_failure_after_committed_inside_the_notification_still_reads_committed() -> None:
    d = SourceDriver(lazy=False)
    replay(d, [Started(PORT), *FREEZE, Restored(DEST)])
    assert replay(d, [failed(CommitStep(Step.MARK_COMMIT))]) == [AnswerNotify(ok=False)]
    assert replay(d, [DumpEnded(ok=False)]) == [CollectDumpStats(lazy=False), KillSurvivors(),
                                                CommitStep(Step.WATCH_COMMITTED)]
    assert replay(d, [Committed(DEST)]) == [Enter(S.DONE), Finish(Outcome.DONE)]


def test_lazy_dump_failure_before_serving_stops_criu_and_rolls_back() -> None:
    d = SourceDriver(lazy=True)
    acts = replay(d, [Started(0), Notified("pre-dump"), DumpEnded(ok=False),
                      RolledBack(survived=True)])
    assert acts[-6:] == [*LAZY_ROLL_BACK, *ROLLED_BACK]


def test_lazy_dump_that_ends_before_serving_is_a_failure() -> None:
    d = SourceDriver(lazy=True)
    acts = replay(d, [Started(0), *LAZY_FREEZE[:2], DumpEnded(ok=True)])
    assert acts[-4:] == [StopDump(), ContinueLeftStopped(), Enter(S.RESUMING),
                         RollBack(EARLY_END)]


@pytest.mark.parametrize("during", [ShipImages(), SendRestore(lazy=True)])
def test_lazy_failure_while_criu_waits_answers_it_then_rolls_back(during: Action) -> None:
    d = SourceDriver(lazy=True)
    events = LAZY_FREEZE[:2] if isinstance(during, ShipImages) else LAZY_FREEZE
    replay(d, [Started(0), *events])
    assert replay(d, [failed(during)]) == [AnswerNotify(ok=False)]
    assert replay(d, [DumpEnded(ok=False)]) == LAZY_ROLL_BACK


@pytest.mark.parametrize("during", [None, CommitStep(Step.SEND_COMMIT)])
def test_lazy_restore_failed_or_commit_unsent_rolls_back(during: Action | None) -> None:
    d = SourceDriver(lazy=True)
    replay(d, [Started(0), *LAZY_FREEZE])
    if during is not None:
        replay(d, [Restored(DEST)])
    assert replay(d, [failed(during)]) == LAZY_ROLL_BACK
    assert d.phase is S.RESUMING


def test_lazy_committed_never_read_loses_the_workload_once_the_dump_ended() -> None:
    d = SourceDriver(lazy=True)
    replay(d, [Started(0), *LAZY_FREEZE, Restored(DEST)])
    assert d.phase is S.COMMITTED
    # how the lazy dump ends says whether every page went: waited for, within a bound
    assert replay(d, [failed()]) == [AwaitDumpEnd(DUMP_END_GRACE_S)]
    assert d.outcome is None
    assert replay(d, [DumpGraceOver()]) == LOST
    assert d.dump_ok is None  # no in-order end: the memory was split


@pytest.mark.parametrize("ok", [True, False])
def test_a_failure_in_the_page_tail_waits_for_the_dumps_end(ok: bool) -> None:
    d = SourceDriver(lazy=True)
    replay(d, [Started(0), *LAZY_FREEZE, Restored(DEST), Committed(DEST)])
    assert d.phase is S.SERVING_PAGES
    assert replay(d, [failed()]) == [AwaitDumpEnd(DUMP_END_GRACE_S)]
    assert replay(d, [DumpEnded(ok=ok)]) == LOST  # lost all the same: B's answer never came
    assert d.dump_ok is ok  # ... but an in-order end says every page went (errors.py)
    assert replay(d, [DumpGraceOver()]) == []  # too late: the outcome is known


def test_a_broken_page_tail_loses_the_workload() -> None:
    d = SourceDriver(lazy=True)
    replay(d, [Started(0), *LAZY_FREEZE, Restored(DEST), Committed(DEST)])
    assert replay(d, [DumpEnded(ok=False)]) == LOST


def test_a_failure_after_the_dump_ended_in_order_loses_the_workload_at_once() -> None:
    d = SourceDriver(lazy=True)
    replay(d, [Started(0), *LAZY_FREEZE, DumpEnded(ok=True), Restored(DEST), Committed(DEST)])
    assert replay(d, [failed()]) == LOST
    assert d.dump_ok is True


def test_cold_check_held_failure_rolls_back_although_committed_came_next() -> None:
    d = SourceDriver(lazy=False)
    replay(d, [Started(PORT), *FREEZE, Restored(DEST)])
    assert d.phase is S.COMMITTED  # as the batch asked, had it completed
    assert replay(d, [failed(CommitStep(Step.CHECK_HELD))]) == [AnswerNotify(ok=False)]
    assert d.phase is S.AWAIT_RESTORE
    assert replay(d, [DumpEnded(ok=False)]) == ROLL_BACK


def test_a_failure_names_an_action_of_the_last_batch() -> None:
    d = SourceDriver(lazy=False)
    replay(d, [Started(PORT)])
    with pytest.raises(ValueError, match="not asked for"):
        d.handle(failed(ShipImages()))


# (driver, events) each ending in one failure; together every failure edge after HELLO
FAILURES: list[tuple[str, SourceDriver, list[Event]]] = [
    ("planned", ruled_final_at_once(),
     [Started(PORT), failed(AskSet(2, final=True, lazy=False))]),
    ("presync", SourceDriver(lazy=False, container=True), [Started(PORT), failed(RunPresync())]),
    ("iterating", precopy(), [Started(PORT), failed(RunPreDump(1, PORT))]),
    ("freezing", SourceDriver(lazy=False),
     [Started(PORT), DumpEnded(ok=False), RolledBack(survived=False)]),
    ("dumped", SourceDriver(lazy=True, move_address=True),
     [Started(0), *LAZY_FREEZE[:2], failed(MoveAddressAway()), DumpEnded(ok=False),
      RolledBack(survived=True)]),
    ("transferring", SourceDriver(lazy=False),
     [Started(PORT), *FREEZE, failed(ShipImages()), DumpEnded(ok=False),
      RolledBack(survived=True)]),
    ("await-restore", SourceDriver(lazy=True),
     [Started(0), *LAZY_FREEZE, failed(), RolledBack(survived=True)]),
    ("committed", SourceDriver(lazy=True),
     [Started(0), *LAZY_FREEZE, Restored(DEST), failed(), DumpGraceOver()]),
    ("serving", SourceDriver(lazy=True),
     [Started(0), *LAZY_FREEZE, Restored(DEST), Committed(DEST), failed(), DumpEnded(False)]),
]


def test_every_failure_edge_of_the_table_is_replayed() -> None:
    seen: set[tuple[SourcePhase, SourcePhase]] = set()
    for name, driver, events in FAILURES:
        for event in events:
            driver.handle(event)
            seen |= {(before, act.phase) for act, before, _ in driver.batch
                     if isinstance(act, Enter)}
        assert driver.outcome is not None, name
    wanted = {(p, q) for p, (_, bad) in SOURCE_TABLE.items() if p is not S.HELLO for q in bad}
    assert wanted <= seen, wanted - seen


# -- a streamed cold restore: lazy up to Restored, which comes with every page there -----

STREAMED_COMMIT_ACTIONS: list[Action] = [
    *steps(Step.QUEUE_STOP, Step.RELEASE_LOCK), Enter(S.COMMITTED),
    *steps(Step.MARK_COMMIT, Step.SEND_COMMIT_ANYWAY),
]


def test_a_streamed_cold_restore_commits_as_cold_and_ends_as_lazy() -> None:
    d = SourceDriver(lazy=False, streamed=True)
    acts = replay(d, [Started(0), *LAZY_FREEZE])
    assert acts == [Enter(S.PLANNED), Enter(S.FREEZING), RunDump(lazy=True, port=0, parent=0),
                    *LAZY_FREEZE_ACTIONS]
    # every page went: CRIU's lazy dump ends, leaving the tree stopped; then Restored
    assert replay(d, [DumpEnded(ok=True)]) == [GuardLeftStopped()]
    assert replay(d, [Restored(DEST)]) == STREAMED_COMMIT_ACTIONS
    assert replay(d, [CommitSent(ok=True)]) == steps(Step.FORWARD_INFLIGHT,
                                                     Step.AWAIT_COMMITTED)
    assert replay(d, [Committed(DEST)]) == [AwaitPagesComplete()]  # no SERVING_PAGES
    assert replay(d, [PagesComplete(512)]) == LAZY_END_ACTIONS
    assert d.outcome is Outcome.DONE


def test_a_streamed_restore_whose_dump_ends_last_is_done_at_its_end() -> None:
    d = SourceDriver(lazy=False, streamed=True)
    replay(d, [Started(0), *LAZY_FREEZE, Restored(DEST), CommitSent(ok=True), Committed(DEST),
               PagesComplete(9)])
    assert d.outcome is None
    assert replay(d, [DumpEnded(ok=False)]) == LAZY_END_ACTIONS  # B has it all: no loss


def test_a_streamed_restore_that_failed_rolls_back_as_lazy() -> None:
    d = SourceDriver(lazy=False, streamed=True)
    replay(d, [Started(0), *LAZY_FREEZE])
    assert replay(d, [failed()]) == LAZY_ROLL_BACK
    assert replay(d, [RolledBack(survived=True)]) == ROLLED_BACK


def test_a_streamed_commit_never_confirmed_is_unconfirmed_not_lost() -> None:
    """The destination holds every page: it runs the workload or keeps it stopped."""
    d = SourceDriver(lazy=False, streamed=True)
    replay(d, [Started(0), *LAZY_FREEZE, DumpEnded(ok=True), Restored(DEST),
               CommitSent(ok=False)])
    assert replay(d, [failed(CommitStep(Step.AWAIT_COMMITTED))]) == [
        KillTree(), CollectDumpStats(lazy=True), Finish(Outcome.UNCONFIRMED)]


def test_a_streamed_commit_confirmed_is_done_though_pages_complete_never_came() -> None:
    d = SourceDriver(lazy=False, streamed=True)
    replay(d, [Started(0), *LAZY_FREEZE, Restored(DEST), CommitSent(ok=True), Committed(DEST)])
    assert replay(d, [failed(AwaitPagesComplete())]) == [
        StopDump(), KillTree(), CollectDumpStats(lazy=True), Enter(S.DONE),
        Finish(Outcome.DONE)]
