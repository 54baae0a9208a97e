"""The SOURCE role's order of steps, sans-IO: events in, actions out, one object per migration.

Pure, the h11 way: :meth:`SourceDriver.handle` takes one event (migration/source_events.py)
and returns the actions to carry out, in order; it never waits, opens or sends anything.
agent/source_drive.py carries the actions out and feeds back what it observes. So a whole
migration, every mode and every failure, can be replayed as a list of events
(tests/unit/migration/test_source_driver.py).

It starts once the destination answered the Plan with Ready (before that, Hello, pre-flight
and the Plan are agent/source.py's and agent/gate.py's) and drives the phase table
(migration/phases.py, checked at every Enter):

* **pre-copy** (``pre_copies``): a container is pre-synced, then pre-dumps run while the
  policy (migration/iterations.py) says ITERATE; then the final set is asked for, lazy for
  hybrid or when the policy switches to post-copy;
* **the final dump**: cold (the destination's page server gets the pages) or lazy (CRIU
  serves them here). CRIU's ``pre-dump`` notification starts the freeze window; at
  ``post-dump`` the images are shipped (and a container's files synced); cold: Restore is
  sent and Restored awaited *inside* the notification, since CRIU holds the frozen tree
  until it is answered; lazy: at ``status-ready`` (CRIU's page server listens);
* **the point of no return**, one walk over migration/commit.py's steps for every mode (the
  table's cold or lazy order, as the final dump is);
* **the end**: cold, CRIU's end and the destination's Committed, in either order; lazy, the
  page tail: PagesComplete and the dump's end, in either order.

A **streamed** cold restore (``streamed``) runs as lazy up to Restored, which the destination
sends once every page is in its stopped tree; then it commits as cold does (commit.py), its
PagesComplete and the dump's end close it, and a failure after COMMITTED is never LOST: the
destination holds the whole workload (DONE once it confirmed, else UNCONFIRMED), and the
source copy is killed.

Failures: while CRIU waits for a notification's answer, the failure is the answer, and the
roll-back follows the dump's end (CRIU resumes the tree first); else before COMMITTED a lazy
dump is stopped (CRIU killed: its tasks continue) and rolled back; after COMMITTED a cold
migration goes on (the destination owns the workload), a lazy one is LOST (its memory is
split). Pre-copy before the freeze is abandoned (nothing frozen); a container's pre-sync
failure is FAILED.
"""

from __future__ import annotations

from ferryman.migration.commit import Step, commit_steps
from ferryman.migration.convergence import Decision, Ruling
from ferryman.migration.iterations import Convergence
from ferryman.migration.phases import SOURCE_TABLE, IllegalTransition, SourcePhase
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

__all__ = ["SourceDriver"]

S = SourcePhase
Actions = tuple[Action, ...]
# commit steps answered by an event: the walk waits there
_ANSWERED = {Step.SEND_COMMIT_ANYWAY: CommitSent, Step.AWAIT_COMMITTED: Committed}
EARLY_END = "criu ended the lazy dump before serving any page"
UNSERVED_END = "criu ended the dump before the commit"
# After a failure past a lazy commit, how long the dump may take to end: CRIU's page
# sockets see a dead link within 5 s (scripts/criu-patches/usertimeout-page-sockets.patch)
DUMP_END_GRACE_S = 7.0


class SourceDriver:
    """One migration's SOURCE steps after Ready (see the module docstring)."""

    def __init__(self, *, lazy: bool, streamed: bool = False, container: bool = False,
                 presync: bool | None = None,
                 move_address: bool = False, hybrid: bool = False,
                 convergence: Convergence | None = None) -> None:
        self.lazy = lazy or streamed  # the final dump's; pre-copy decides it at the final set
        self.streamed = streamed  # cold, its pages fetched into the tree held stopped
        self.container = container  # synced while frozen, not a same-host process tree
        self.presync = container if presync is None else presync  # files synced first
        self.move_address = move_address
        self.hybrid = hybrid
        self.convergence = convergence  # pre-copy: the policy and its history
        self.phase = S.HELLO
        self.outcome: Outcome | None = None
        self.port = 0  # the page server of the next set (cold)
        self.parent = 0  # the last pre-dump's set
        self.final_lazy = False  # the final set asked for is lazy
        self.asking_final = False
        self.presynced = False
        self.ruling: Ruling | None = None
        self.notify_open = False  # CRIU waits for our answer to a notification
        self.batch: list[tuple[Action, SourcePhase, bool]] = []  # the last, with the state
        self.failing = False  # a failure was the answer: the roll-back follows CRIU's end
        self.serving = False  # lazy: CRIU's page server listens
        self.dump_running = False
        self.dump_ok: bool | None = None  # how the final dump ended
        self.commit_walk: tuple[Step, ...] = ()
        self.watching = False  # cold: Committed is being read
        self.commit_unsent = False  # cold: the Commit's send failed (it may have arrived)
        self.committed_pid: int | None = None
        self.confirm_failed = False  # cold: reading Committed failed
        self.pages_complete = False

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def handle(self, event: Event) -> Actions:
        """The actions ``event`` calls for, in order (none once the outcome is known)."""
        if self.outcome is not None:
            return ()
        if isinstance(event, Failed) and event.during is not None:
            self._rewind(event.during)  # the rest of that batch was not carried out
        if isinstance(event, Notified):
            self.notify_open = True
        elif isinstance(event, DumpEnded):
            self.notify_open = False  # CRIU is gone
        phase, notify = self.phase, self.notify_open
        actions = self._handle(event)
        self.batch = []
        for act in actions:  # where each action finds the migration, should it fail
            self.batch.append((act, phase, notify))
            if isinstance(act, Enter):
                phase = act.phase
            elif isinstance(act, AnswerNotify):
                notify = False
        self.notify_open = notify
        return actions

    def _rewind(self, during: Action) -> None:
        for act, phase, notify in self.batch:
            if act == during:
                self.phase, self.notify_open = phase, notify
                return
        raise ValueError(f"{during!r} was not asked for by the last batch")

    def _handle(self, event: Event) -> Actions:
        match event:
            case Started(port):
                return self._start(port)
            case PresyncDone():
                return self._presync_done(event)
            case SetReady():
                return self._set_ready(event)
            case PreDumpDone(stats):
                assert self.convergence is not None
                predicted = self.convergence.add(stats)
                return (RecordPrediction(predicted), *self._iterate())
            case Notified(script):
                return self._notified(script)
            case DumpEnded(ok):
                return self._dump_ended(ok)
            case Restored():
                return self._walk_commit(commit_steps(lazy=self.lazy, streamed=self.streamed))
            case CommitSent(ok):
                self.commit_unsent = not ok
                return self._walk_commit(self.commit_walk)
            case Committed(pid):
                return self._committed(pid)
            case PagesComplete():
                self.pages_complete = True
                return self._tail_end()
            case RolledBack(survived):
                if survived:
                    return self._finish(Outcome.ROLLED_BACK, self._enter(S.ROLLED_BACK))
                return self._finish(Outcome.NOT_SURVIVED, self._enter(S.LOST))
            case Failed():
                return self._failed()
            case DumpGraceOver():
                return self._lost() if self.failing else ()
        raise TypeError(f"not a SOURCE event: {event!r}")

    # -- the way there ---------------------------------------------------------------

    def _start(self, port: int) -> Actions:
        self.port = port
        first = (self._enter(S.PLANNED),)
        if self.presync:
            return (*first, self._enter(S.PRESYNC), RunPresync())
        return first + (self._iterate() if self.convergence is not None else self._freeze())

    def _presync_done(self, event: PresyncDone) -> Actions:
        self.presynced = True
        if self.convergence is None:
            return self._freeze()
        self.convergence.presync_ms = event.ms
        return self._iterate()

    def _iterate(self) -> Actions:
        conv = self.convergence
        assert conv is not None
        ruling = self.ruling = conv.ruling()
        index = len(conv.history) + 1
        if ruling.decision is Decision.ITERATE:
            if index > 1:
                return (AskSet(index),)
            return (self._enter(S.ITERATING, quiet=True), RunPreDump(index, self.port))
        self.final_lazy = self.hybrid or ruling.decision is Decision.SWITCH_TO_POSTCOPY
        self.asking_final = True
        return (AskSet(index, final=True, lazy=self.final_lazy),)

    def _set_ready(self, event: SetReady) -> Actions:
        conv = self.convergence
        assert conv is not None
        self.port = event.port
        if not self.asking_final:
            conv.set_ready(event.restore_bytes_per_s)
            index = len(conv.history) + 1
            return (self._enter(S.ITERATING, quiet=True), RunPreDump(index, event.port))
        self.lazy = self.final_lazy
        self.parent = len(conv.history)
        assert self.ruling is not None
        return (RecordIterations(conv.summary(self.ruling), self.parent, self.lazy),
                *self._freeze())

    def _freeze(self) -> Actions:
        self.dump_running = True
        return (self._enter(S.FREEZING),
                RunDump(self.lazy, self.port, self.parent))

    def _notified(self, script: str) -> Actions:
        if self.failing:
            return self._answer(ok=False)
        if script == "pre-dump":
            return (FreezeWindow(), *self._answer())
        if script == "post-dump":
            acts: list[Action] = [self._enter(S.DUMPED)]
            if self.move_address:
                acts.append(MoveAddressAway())
            acts += [self._enter(S.TRANSFERRING), ShipImages(),
                     FinalSync() if self.container else KeepShared()]
            if self.lazy:  # CRIU now opens its page server and says status-ready
                return (*acts, *self._answer())
            # cold: CRIU holds the frozen tree until answered, so the commit happens in here
            return (*acts, SendRestore(lazy=False), FindNetworkLock(),
                    self._enter(S.AWAIT_RESTORE), AwaitRestored())
        if script == "status-ready" and self.lazy:
            self.serving = True
            return (SendRestore(lazy=True), FindNetworkLock(), self._enter(S.AWAIT_RESTORE),
                    AwaitRestored(), *self._answer())
        return self._answer()

    def _answer(self, *, ok: bool = True) -> Actions:
        return (AnswerNotify(ok),)

    # -- the point of no return, one walk for every mode ------------------------------

    def _walk_commit(self, steps: tuple[Step, ...]) -> Actions:
        acts: list[Action] = []
        for i, step in enumerate(steps):
            if step is Step.WATCH_COMMITTED and self.commit_unsent:
                continue  # nothing to read: the end says the commit may not have arrived
            if step is Step.ENTER_COMMITTED:
                acts.append(self._enter(S.COMMITTED))
            elif step is Step.ENTER_SERVING:
                acts.append(self._enter(S.SERVING_PAGES))
            else:
                acts.append(CommitStep(step))
            if step in (Step.WATCH_COMMITTED, Step.AWAIT_COMMITTED):
                self.watching = True
            if step in _ANSWERED:
                self.commit_walk = steps[i + 1:]
                return tuple(acts)
        self.commit_walk = ()
        if self.lazy:
            return (*acts, AwaitPagesComplete())
        return (*acts, *self._answer())  # cold: CRIU destroys the source copy now

    def _committed(self, pid: int) -> Actions:
        self.committed_pid = pid
        if self.lazy:
            return self._walk_commit(self.commit_walk)
        return self._cold_end()

    # -- the end ------------------------------------------------------------------------

    def _dump_ended(self, ok: bool) -> Actions:
        self.dump_running = False
        self.dump_ok = ok
        if self.phase in (S.COMMITTED, S.SERVING_PAGES):
            if self.streamed:  # the destination had every page before Restored
                return () if self.failing else self._tail_end()
            if self.lazy:
                return self._lost() if not ok or self.failing else self._tail_end()
            # cold: CRIU answered after the commit; an error of its is only logged
            return (*((ThawCgroup(),) if ok else ()), CollectDumpStats(lazy=False),
                    KillSurvivors(), *self._cold_end())
        if self.failing or not ok:
            return self._roll_back()
        if self.lazy:
            # The client closed the session in order: every page went, or the restore
            # failed; the destination's answer decides (docs/ARCHITECTURE.md, section 10).
            return (GuardLeftStopped(),) if self.serving else self._roll_back(EARLY_END)
        return self._roll_back(UNSERVED_END)

    def _cold_end(self) -> Actions:
        if self.dump_running:
            return ()  # CRIU still cleans up: its end comes first
        if self.commit_unsent or self.confirm_failed:
            return self._finish(Outcome.UNCONFIRMED)
        if self.committed_pid is None:
            if self.watching:
                return ()
            # a failure inside the notification, past COMMITTED, cut the walk short
            self.watching = True
            return (CommitStep(Step.WATCH_COMMITTED),)
        return self._finish(Outcome.DONE, self._enter(S.DONE))

    def _tail_end(self) -> Actions:
        if not (self.pages_complete and self.dump_ok is not None):
            return ()
        return self._finish(Outcome.DONE, KillTree(), RecordPages(),
                            CollectDumpStats(lazy=True), self._enter(S.DONE))

    def _failed(self) -> Actions:
        phase = self.phase
        if phase in (S.HELLO, S.PLANNED, S.PRESYNC) and not self.dump_running:
            failed = self._enter(S.FAILED, quiet=True)
            if self.convergence is not None and (self.presynced or not self.presync):
                return self._finish(Outcome.FAILED, Abandon(), failed)  # the Iterate went
            return self._finish(Outcome.FAILED, failed)  # the pre-sync ended the conversation
        if phase is S.ITERATING:
            return self._finish(Outcome.ABANDONED, Abandon(),
                                self._enter(S.ROLLED_BACK, quiet=True))
        if self.notify_open:  # the failure is CRIU's answer; it resumes the tree, then ends
            self.failing = True
            return self._answer(ok=False)
        if phase in (S.COMMITTED, S.SERVING_PAGES):
            if self.streamed:
                return self._streamed_end()
            if self.lazy:
                if self.dump_running and not self.failing:
                    self.failing = True  # lost; how the dump ends says whether B has it all
                    return (AwaitDumpEnd(DUMP_END_GRACE_S),)
                return self._lost()
            self.confirm_failed = True  # cold: CRIU is told, or was; nothing more to do
            return self._cold_end()
        if self.dump_running and not self.lazy:
            self.failing = True  # cold: CRIU's end comes, then the roll-back
            return ()
        return self._roll_back()

    def _streamed_end(self) -> Actions:
        """A failure past a streamed commit: the destination has the whole memory, and the
        workload runs there if it confirmed the commit (else it keeps it stopped)."""
        self.failing = True
        stop = (StopDump(),) if self.dump_running else ()
        self.dump_running = False
        if self.committed_pid is not None:
            return self._finish(Outcome.DONE, *stop, KillTree(), CollectDumpStats(lazy=True),
                                self._enter(S.DONE))
        return self._finish(Outcome.UNCONFIRMED, *stop, KillTree(),
                            CollectDumpStats(lazy=True))

    def _roll_back(self, reason: str = "") -> Actions:
        first: tuple[Action, ...] = ()
        if self.lazy:
            first = (StopDump(), ContinueLeftStopped())
            self.dump_running = False
        return (*first, self._enter(S.RESUMING), RollBack(reason))

    def _lost(self) -> Actions:
        return self._finish(Outcome.LOST, StopDump(), KillTree(), self._enter(S.LOST))

    def _finish(self, outcome: Outcome, *acts: Action) -> Actions:
        self.outcome = outcome
        return (*acts, Finish(outcome))

    def _enter(self, phase: SourcePhase, *, quiet: bool = False) -> Enter:
        ok, bad = SOURCE_TABLE[self.phase]
        if phase not in ok | bad:
            raise IllegalTransition(f"{self.phase} -> {phase}")
        self.phase = phase
        return Enter(phase, quiet)
