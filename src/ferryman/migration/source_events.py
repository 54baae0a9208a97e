"""What goes into the SOURCE driver (events, nouns) and what comes out (actions, verbs).

Pure values: frozen, slotted dataclasses, the h11 way. The driver
(migration/source_driver.py) turns each event into a tuple of actions; the agent
(agent/source_drive.py) carries the actions out and turns what it observes (CRIU's
notifications, the dump's end, the destination's messages, its own errors) into events.
An action marked *answered* is the last of its batch: its outcome comes back as the event
named beside it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ferryman.migration.commit import Step
from ferryman.migration.convergence import IterationStats
from ferryman.migration.iterations import Summary
from ferryman.migration.phases import SourcePhase

# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """The destination answered the Plan with Ready: the first page server's port."""

    port: int


@dataclass(frozen=True, slots=True)
class PresyncDone:
    """A container's files were copied while it runs (how long it took, for the model)."""

    ms: float | None = None


@dataclass(frozen=True, slots=True)
class SetReady:
    """The destination's Ready for the next image set (port 0: a lazy final set)."""

    port: int
    restore_bytes_per_s: int = 0


@dataclass(frozen=True, slots=True)
class PreDumpDone:
    stats: IterationStats


@dataclass(frozen=True, slots=True)
class Notified:
    """CRIU's notification during the final dump: pre-dump, post-dump, status-ready, ..."""

    script: str


@dataclass(frozen=True, slots=True)
class DumpEnded:
    """The final dump returned (``ok``) or raised."""

    ok: bool


@dataclass(frozen=True, slots=True)
class Restored:
    pid: int


@dataclass(frozen=True, slots=True)
class CommitSent:
    """Cold: the Commit went out (``ok``), or the send failed (it may have arrived)."""

    ok: bool


@dataclass(frozen=True, slots=True)
class Committed:
    pid: int


@dataclass(frozen=True, slots=True)
class PagesComplete:
    pages: int


@dataclass(frozen=True, slots=True)
class RolledBack:
    """The roll-back was carried out; whether the workload's tree survived it."""

    survived: bool


@dataclass(frozen=True, slots=True)
class Failed:
    """Something broke: ``cause`` names it (an error, the peer lost, a timeout, the
    destination's Failed). ``during``: the action that raised, None for a wait."""

    cause: str
    during: Action | None = None


@dataclass(frozen=True, slots=True)
class DumpGraceOver:
    """The lazy dump did not end within the grace after a failure past the commit."""


Event = (Started | PresyncDone | SetReady | PreDumpDone | Notified | DumpEnded | Restored
         | CommitSent | Committed | PagesComplete | RolledBack | Failed | DumpGraceOver)


# -- actions ----------------------------------------------------------------------------


class Outcome(enum.Enum):
    DONE = "running on the destination"
    ROLLED_BACK = "rolled back: running here again"
    ABANDONED = "pre-copy given up: it never stopped running here"
    FAILED = "failed before anything was frozen"
    NOT_SURVIVED = "rolled back, but the tree did not survive"
    LOST = "lost after the point of no return"
    UNCONFIRMED = "committed, but the destination did not confirm it"


@dataclass(frozen=True, slots=True)
class Enter:
    phase: SourcePhase
    quiet: bool = False  # no progress line (the step says more itself)


@dataclass(frozen=True, slots=True)
class RunPresync:
    """A container's files while it runs (answered: PresyncDone)."""


@dataclass(frozen=True, slots=True)
class AskSet:
    """Send Iterate(index) and read the destination's Ready (answered: SetReady)."""

    index: int
    final: bool = False
    lazy: bool = False


@dataclass(frozen=True, slots=True)
class RunPreDump:
    """Pre-dump ``index`` into the page server at ``port`` (answered: PreDumpDone)."""

    index: int
    port: int


@dataclass(frozen=True, slots=True)
class RecordPrediction:
    predicted_ms: float | None


@dataclass(frozen=True, slots=True)
class RecordIterations:
    summary: Summary
    pre_dumps: int
    lazy: bool


@dataclass(frozen=True, slots=True)
class RunDump:
    """Start the final dump (Notified and DumpEnded follow). ``parent``: the last
    pre-dump's set index (0: none); ``port``: the destination's page server (cold) or page
    relay (Ready's port; a lazy dump without the relay gets 0: its own server listens)."""

    lazy: bool
    port: int
    parent: int


@dataclass(frozen=True, slots=True)
class FreezeWindow:
    """CRIU's pre-dump: the freeze starts (hold in-flight segments, freeze our cgroup)."""


@dataclass(frozen=True, slots=True)
class AnswerNotify:
    """Answer CRIU's notification: success, or the failure that happened meanwhile."""

    ok: bool


@dataclass(frozen=True, slots=True)
class MoveAddressAway:
    """Frozen and network-locked: delete the service address here."""


@dataclass(frozen=True, slots=True)
class ShipImages:
    pass


@dataclass(frozen=True, slots=True)
class FinalSync:
    """A container's files, final, while it is frozen."""


@dataclass(frozen=True, slots=True)
class KeepShared:
    """A process tree: keep what its restore would take from this frozen tree (same host)."""


@dataclass(frozen=True, slots=True)
class SendRestore:
    lazy: bool  # names our page server's port


@dataclass(frozen=True, slots=True)
class FindNetworkLock:
    pass


@dataclass(frozen=True, slots=True)
class AwaitRestored:
    """Read the destination's Restored (Restored, or Failed, follows)."""


@dataclass(frozen=True, slots=True)
class CommitStep:
    """One step of the point of no return (migration/commit.py). SEND_COMMIT_ANYWAY is
    answered with CommitSent; WATCH_COMMITTED and AWAIT_COMMITTED start the read of
    Committed (Committed, or Failed, follows)."""

    step: Step


@dataclass(frozen=True, slots=True)
class ThawCgroup:
    pass


@dataclass(frozen=True, slots=True)
class CollectDumpStats:
    lazy: bool


@dataclass(frozen=True, slots=True)
class KillSurvivors:
    """CRIU said it destroyed the source copy: kill any task it left."""


@dataclass(frozen=True, slots=True)
class AwaitPagesComplete:
    pass


@dataclass(frozen=True, slots=True)
class AwaitDumpEnd:
    """Past the commit something broke while the lazy dump still serves: wait ``seconds``
    at most (answered: DumpEnded, or DumpGraceOver) for how it ends, which says whether
    every page went (an in-order end) before the workload is reported lost."""

    seconds: float


@dataclass(frozen=True, slots=True)
class StopDump:
    """Kill CRIU (post-copy); stop reading the channel. Its frozen tasks continue."""


@dataclass(frozen=True, slots=True)
class GuardLeftStopped:
    """A lazy dump ended before the commit (every page went, or the restore failed) and
    left the tree stopped, CRIU gone: tell the controller's guard, which continues it should
    the controller die before it decides (host/sourcecopy.py)."""


@dataclass(frozen=True, slots=True)
class ContinueLeftStopped:
    """A lazy dump that ended by itself left the tree stopped: continue it."""


@dataclass(frozen=True, slots=True)
class RollBack:
    """Resume the workload here and Abort (answered: RolledBack). ``reason``: when no
    error was raised (a lazy dump that ended before serving)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Abandon:
    """Pre-copy's failure: Abort, the destination drops its sets; nothing was frozen."""


@dataclass(frozen=True, slots=True)
class KillTree:
    pass


@dataclass(frozen=True, slots=True)
class RecordPages:
    """The post-copy tail's figures (PagesComplete) into the report."""


@dataclass(frozen=True, slots=True)
class Finish:
    outcome: Outcome


Action = (Enter | RunPresync | AskSet | RunPreDump | RecordPrediction | RecordIterations
          | RunDump | FreezeWindow | AnswerNotify | MoveAddressAway | ShipImages | FinalSync
          | KeepShared | SendRestore | FindNetworkLock | AwaitRestored | CommitStep
          | ThawCgroup | CollectDumpStats | KillSurvivors | AwaitPagesComplete | AwaitDumpEnd
          | StopDump
          | GuardLeftStopped | ContinueLeftStopped | RollBack | Abandon | KillTree | RecordPages
          | Finish)
