"""How a SOURCE migration ended, as ``ferryman migrate`` knows it: the driver's outcome
(migration/source_events.py ``Outcome``) as the report's result and the exception whose
exit code the user sees (errors.py)."""

from __future__ import annotations

from ferryman.agent.role import SourceRole
from ferryman.errors import (
    FerrymanError,
    MigrationRolledBack,
    PeerLost,
    RemoteError,
    WorkloadLost,
)
from ferryman.migration.report import Result
from ferryman.migration.source_events import Outcome

__all__ = ["conclude"]

# a lazy dump that ended in order ends a runc container it could not leave frozen
HELD_WHOLE = ("the destination's lazy-pages daemon had asked for its last page before the "
              "failure, so the copy kept stopped there may be whole: see 'ferryman orphans' "
              "there")
WHERE = "the workload is on the destination, running or kept stopped: see 'ferryman orphans' there"


def conclude(role: SourceRole, outcome: Outcome | None, exc: BaseException | None, *,
             commit_error: PeerLost | None, confirm_error: FerrymanError | None,
             served_all: bool = False) -> None:
    """Set the report's result; raise unless the workload runs on the destination.
    ``served_all``: a lazy dump had ended in order (WorkloadLost says what it may mean)."""
    reason = getattr(exc, "message", str(exc))
    hint = getattr(exc, "hint", None)
    if outcome is Outcome.DONE:
        role.report.result = Result.COMMITTED
    elif outcome is Outcome.ROLLED_BACK:
        role.report.result = Result.ROLLED_BACK
        raise MigrationRolledBack(reason, hint=hint) from exc
    elif outcome is Outcome.ABANDONED:
        role.report.result = Result.ROLLED_BACK
        code = exc.code if isinstance(exc, RemoteError) else ""
        raise MigrationRolledBack(reason, hint=hint, cause_code=code) from exc
    elif outcome is Outcome.NOT_SURVIVED:
        role.report.result = Result.LOST
        raise FerrymanError(f"workload PID {role.pid} did not survive the failed "
                            f"migration: {exc}", hint=HELD_WHOLE if served_all else None) from exc
    elif outcome is Outcome.LOST:
        role.report.result = Result.LOST
        raise WorkloadLost(role.pid, reason, served_all=served_all) from exc
    elif outcome is Outcome.UNCONFIRMED:
        peer, node = (role.ch.peer if role.ch else ""), role.report.destination_node
        if commit_error is not None:
            raise PeerLost(peer, f"the commit may not have reached {node}: "
                           f"{commit_error.message}", hint=WHERE)
        err = confirm_error
        if isinstance(err, PeerLost):
            raise PeerLost(peer, f"{node} did not confirm the commit: {err.message}",
                           hint=WHERE) from err
        raise err or PeerLost(peer, f"{node} did not confirm the commit", hint=WHERE)
    elif exc is not None:  # FAILED: before anything was frozen
        raise exc
