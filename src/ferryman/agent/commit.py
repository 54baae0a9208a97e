"""The SOURCE's point of no return, carried out one step at a time.

Which steps, in which order, and what a failure of one leads to is decided by the SOURCE
driver (migration/source_driver.py), which walks migration/commit.py's table for the final
dump (cold or lazy) and hands each step to agent/source_drive.py; the steps that are not a
phase or a read of the channel come here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferryman import wire
from ferryman.errors import FerrymanError
from ferryman.migration.commit import Step

if TYPE_CHECKING:
    from ferryman.agent.role import SourceRole

__all__ = ["carry_out"]


async def carry_out(role: SourceRole, step: Step) -> None:
    """Do ``step`` (QUEUE_STOP, CHECK_HELD, RELEASE_LOCK, MARK_COMMIT, SEND_COMMIT,
    FORWARD_INFLIGHT); the errors are the step's own (a failed send raises PeerLost)."""
    match step:
        case Step.QUEUE_STOP:
            # Should CRIU fail to kill the source tasks (cold), or resume them after a
            # broken page tail (lazy), the queued SIGSTOP stops them before they run.
            role.queue_stop_source()
        case Step.CHECK_HELD:
            if not role.criu_holds_tree():  # CRIU died: they ran on after the dump
                raise FerrymanError("criu let the workload go before the commit, so it "
                                    "ran on after its dump",
                                    hint="check why criu died (its log)")
        case Step.RELEASE_LOCK:
            await role.release_network_lock()
        case Step.MARK_COMMIT:
            role.mark_commit()
        case Step.SEND_COMMIT | Step.SEND_COMMIT_ANYWAY:
            assert role.ch is not None
            await role.ch.send(wire.Commit())
        case Step.FORWARD_INFLIGHT:
            role.forward_inflight()
        case _:
            raise ValueError(f"{step.name} is the driver's or the executor's, not a step here")
