"""The DESTINATION session's order of steps, sans-IO: events in, actions out.

Pure, like migration/source_driver.py: :meth:`DestinationDriver.handle` takes one event
and returns the actions, in order; agent/destination_drive.py carries them out and feeds
back what it read or how an action ended. Every path is replayable
(tests/unit/migration/test_destination_driver.py). It starts once the Plan was vetted
(agent/destination.py: Hello, pre-flight, ``_prepare``) and drives the DESTINATION phase
table (migration/phases.py):

* READY, then RECEIVING: one message at a time (image files, pre-copy's Iterate, Restore or
  Abort); a lazy Plan starts CRIU's lazy-pages daemon as soon as ``pstree.img`` is here;
* RESTORING: restored **stopped**; RESTORED: held (an ORPHANED record first), Restored sent,
  then the source's Commit or Abort;
* COMMITTED: resumed, Committed sent; lazy: FETCHING_PAGES until every page is here; DONE.

A **streamed** cold restore (``streamed``: a lazy Plan of mode cold) fetches every page while
still RESTORING, into the tree restored stopped, and only then goes on as cold: HOLD,
RESTORED, Restored; after the Commit it resumes, sends Committed and then PagesComplete (the
wire runs as post-copy's). A failed fetch is a failed restore (Failed, the source rolls
back); a source lost in RESTORED leaves the whole tree stopped (ORPHANED), as cold's.

Failures: a bad image file or a failed restore is answered with Failed (after the clean-up)
and the source's Abort awaited; an Abort cleans up (KILLED once a tree exists); a source
lost in RESTORED leaves the tree stopped (ORPHANED) unless restored lazily (KILLED: its
memory went with the source); a broken page tail is LOST; any other failure cleans up and
takes the table's failure successor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ferryman.migration.phases import (
    DESTINATION_FINAL,
    DESTINATION_TABLE,
    DestinationPhase,
    IllegalTransition,
)

__all__ = ["DestinationDriver"]

D = DestinationPhase
LAZY_START_AFTER = "pstree.img"  # agent/files.py sends the lazy-pages daemon's images first

# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    """The Plan passed every check here: Ready goes out."""


@dataclass(frozen=True, slots=True)
class PlanRefused:
    code: str


@dataclass(frozen=True, slots=True)
class FileReceived:
    """One image file is complete (``name``), or a part of one ("")."""

    name: str = ""


@dataclass(frozen=True, slots=True)
class IterateAsked:
    index: int
    final: bool = False
    lazy: bool = False


@dataclass(frozen=True, slots=True)
class RestoreAsked:
    """Every image is here (the Restore message said how many)."""


@dataclass(frozen=True, slots=True)
class AbortAsked:
    pass


@dataclass(frozen=True, slots=True)
class TransferFailed:
    """A bad image file (or one missing at Restore): ``code`` says which check."""

    code: str


@dataclass(frozen=True, slots=True)
class RestoreDone:
    pid: int


@dataclass(frozen=True, slots=True)
class RestoreFailed:
    """The restore failed (``restore``), or was refused (``image-damaged``)."""

    code: str = "restore"


@dataclass(frozen=True, slots=True)
class CommitAsked:
    pass


@dataclass(frozen=True, slots=True)
class SourceLost:
    """No Commit or Abort: the connection broke, the source said Error, or the timeout."""


@dataclass(frozen=True, slots=True)
class PagesFetched:
    pass


@dataclass(frozen=True, slots=True)
class Failed:
    cause: str
    during: Action | None = None


Event = (Prepared | PlanRefused | FileReceived | IterateAsked | RestoreAsked | AbortAsked
         | TransferFailed | RestoreDone | RestoreFailed | CommitAsked | SourceLost
         | PagesFetched | Failed)


# -- actions --------------------------------------------------------------------------


class Act(enum.Enum):
    """The actions that carry no data (each named for what it does)."""

    SEND_READY = "send Ready (page server and sync ports)"
    SEND_REFUSED = "send Refused"
    READ_NEXT = "read the next message (answered: a file, Iterate, Restore, Abort)"
    ANSWER_ITERATE = "open the next image set and answer Ready (pre-copy)"
    START_LAZY_EARLY = "start CRIU's lazy-pages daemon on the images it reads"
    RESTORE = "restore the tree stopped (answered: RestoreDone or RestoreFailed)"
    HOLD = "the tree's identity, its ORPHANED record, the tasks to keep stopped"
    SEND_RESTORED = "send Restored"
    AWAIT_DECISION = "read Commit or Abort (answered: CommitAsked, AbortAsked, SourceLost)"
    RESUME = "resume the tree (tasks stopped at the source stay stopped)"
    SEND_COMMITTED = "send Committed"
    FETCH_PAGES = "wait for every lazy page (answered: PagesFetched)"
    SEND_PAGES_COMPLETE = "send PagesComplete"
    KILL_TAIL = "kill the lazy-pages daemon and the tree, say Error(lost), record LOST"
    SEND_ABORTED = "send Aborted"
    AWAIT_ABORT = "read the source's Abort after our Failed, then send Aborted"
    KEEP_ORPHAN = "keep the tree stopped for an operator (its address given back)"
    RECORD_DONE = "record the outcome DONE"
    HANG_UP = "close the connection: nothing more is said (the clean-up follows)"


@dataclass(frozen=True, slots=True)
class Do:
    act: Act


@dataclass(frozen=True, slots=True)
class Enter:
    phase: DestinationPhase


@dataclass(frozen=True, slots=True)
class CleanUp:
    """Stop and remove this migration's daemons, guards, tree, container and images."""

    keep_logs: bool = False


@dataclass(frozen=True, slots=True)
class SendFailed:
    code: str


@dataclass(frozen=True, slots=True)
class Finish:
    phase: DestinationPhase


Action = Do | Enter | CleanUp | SendFailed | Finish


# -- the driver -----------------------------------------------------------------------


class DestinationDriver:
    def __init__(self, *, lazy: bool, streamed: bool = False) -> None:
        self.plan_lazy = lazy or streamed  # the Plan names the source's page server: start early
        self.lazy = lazy or streamed  # the Plan's, or a final Iterate's
        self.streamed = streamed  # every page is fetched before Restored
        self.fetched = False  # streamed: they are all here
        self.phase = D.HELLO
        self.restored = False  # a tree exists here
        self.lazy_started = False
        self.finished: DestinationPhase | None = None
        self.batch: list[tuple[Action, DestinationPhase]] = []  # the last, with its phases

    @property
    def done(self) -> bool:
        return self.finished is not None

    def handle(self, event: Event) -> tuple[Action, ...]:
        """The actions ``event`` calls for, in order (none once the session ended)."""
        if isinstance(event, Failed) and event.during is not None:
            self._rewind(event.during)  # the rest of that batch (its Finish too) never ran
        if self.finished is not None:
            return ()
        phase = self.phase
        actions = self._handle(event)
        self.batch = []
        for act in actions:  # where each action finds the session, should it fail
            self.batch.append((act, phase))
            if isinstance(act, Enter):
                phase = act.phase
        return actions

    def _rewind(self, during: Action) -> None:
        for act, phase in self.batch:
            if act == during:
                self.phase = phase
                self.finished = None
                return
        raise ValueError(f"{during!r} was not asked for by the last batch")

    def _handle(self, event: Event) -> tuple[Action, ...]:
        match event:
            case Prepared():
                return (self._enter(D.READY), Do(Act.SEND_READY), self._enter(D.RECEIVING),
                        Do(Act.READ_NEXT))
            case PlanRefused():
                return self._end(CleanUp(), self._enter(D.REFUSED), Do(Act.SEND_REFUSED))
            case FileReceived(name):
                if name == LAZY_START_AFTER and self.plan_lazy and not self.lazy_started:
                    self.lazy_started = True
                    return (Do(Act.START_LAZY_EARLY), Do(Act.READ_NEXT))
                return (Do(Act.READ_NEXT),)
            case IterateAsked(_, final, lazy):
                self.lazy = self.lazy or (final and lazy)
                return (Do(Act.ANSWER_ITERATE), Do(Act.READ_NEXT))
            case RestoreAsked():
                return (self._enter(D.RESTORING), Do(Act.RESTORE))
            case TransferFailed(code):
                return self._report_failure(code)
            case RestoreFailed(code):
                return self._report_failure(code)
            case RestoreDone():
                self.restored = True
                if self.streamed:  # every page first, into the tree restored stopped
                    return (Do(Act.FETCH_PAGES),)
                return self._restored()
            case AbortAsked():
                return self._end(CleanUp(), self._enter(D.KILLED if self.restored
                                                        else D.CLEANED),
                                 Do(Act.SEND_ABORTED))
            case CommitAsked():
                acts = (Do(Act.RESUME), self._enter(D.COMMITTED), Do(Act.SEND_COMMITTED))
                if self.streamed:
                    return (*acts, Do(Act.SEND_PAGES_COMPLETE), *self._done())
                if self.lazy:
                    return (*acts, self._enter(D.FETCHING_PAGES), Do(Act.FETCH_PAGES))
                return (*acts, *self._done())
            case PagesFetched():
                if self.streamed:
                    self.fetched = True
                    return self._restored()
                return (Do(Act.SEND_PAGES_COMPLETE), *self._done())
            case SourceLost():
                return self._source_lost()
            case Failed(_, during):
                return self._failed(during)
        raise TypeError(f"not a DESTINATION event: {event!r}")

    def _restored(self) -> tuple[Action, ...]:
        return (Do(Act.HOLD), self._enter(D.RESTORED), Do(Act.SEND_RESTORED),
                Do(Act.AWAIT_DECISION))

    def _done(self) -> tuple[Action, ...]:
        # recorded before the hang-up, so that the source returns with the record right here;
        # cleaned up after it: the source does not wait for this node's housekeeping (the
        # images of a DONE migration that an agent dies cleaning are removed at its start)
        return self._end(self._enter(D.DONE), Do(Act.RECORD_DONE), Do(Act.HANG_UP),
                         CleanUp(keep_logs=True))

    def _report_failure(self, code: str) -> tuple[Action, ...]:
        return self._end(CleanUp(), self._enter(D.CLEANED), SendFailed(code),
                         Do(Act.AWAIT_ABORT))

    def _source_lost(self) -> tuple[Action, ...]:
        if self.lazy and not self.fetched:  # its memory went with the source's page server
            return self._end(self._enter(D.KILLED), CleanUp())
        return self._end(self._enter(D.ORPHANED), Do(Act.KEEP_ORPHAN))

    def _failed(self, during: Action | None) -> tuple[Action, ...]:
        if self.phase in DESTINATION_FINAL:
            return self._end()
        if self.phase is D.RESTORED:
            return self._source_lost()
        if during == Do(Act.FETCH_PAGES) and self.streamed:
            return self._report_failure("restore")  # before Restored: the source rolls back
        if during == Do(Act.FETCH_PAGES):
            return self._end(self._enter(D.LOST), Do(Act.KILL_TAIL), CleanUp(keep_logs=True))
        if self.phase is D.RESTORING:  # a tree restored here goes with the clean-up
            return self._end(CleanUp(), self._enter(D.CLEANED))
        _, bad = DESTINATION_TABLE[self.phase]
        target = next(iter(bad)) if len(bad) == 1 else None
        return self._end(CleanUp(), *((self._enter(target),) if target else ()))

    def _end(self, *acts: Action) -> tuple[Action, ...]:
        self.finished = self.phase
        return (*acts, Finish(self.phase))

    def _enter(self, phase: DestinationPhase) -> Enter:
        ok, bad = DESTINATION_TABLE[self.phase]
        if phase not in ok | bad:
            raise IllegalTransition(f"{self.phase} -> {phase}")
        self.phase = phase
        return Enter(phase)
