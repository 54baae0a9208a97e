"""The SOURCE's point of no return, carried out: migration/commit.py's steps, for both dumps.

Called once the destination reported Restored: by ``SourceMigration.on_notify`` at a cold
dump's ``post-dump`` (CRIU still holds the frozen tree and destroys it when the notification
is answered), and by agent/postcopy.py after a lazy dump's restore. The order of the steps,
and why it differs between the two, is migration/commit.py's; this module only does them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ferryman import wire
from ferryman.errors import FerrymanError, PeerLost
from ferryman.migration.commit import Step, commit_steps
from ferryman.migration.phases import SourcePhase

if TYPE_CHECKING:
    from ferryman.agent.role import SourceRole

S = SourcePhase


async def point_of_no_return(m: SourceRole) -> None:
    """Queue the source tasks' stop, drop the lock, send Commit and follow it up, in the
    order :func:`ferryman.migration.commit.commit_steps` gives for this final dump."""
    assert m.ch is not None
    done: wire.Committed | None = None
    for step in commit_steps(lazy=m.lazy):
        match step:
            case Step.QUEUE_STOP:
                # Should CRIU fail to kill the source tasks (cold), or resume them after a
                # broken page tail (lazy), the queued SIGSTOP stops them before they run.
                m.queue_stop_source()
            case Step.CHECK_HELD:
                if not m.criu_holds_tree():  # CRIU died: they ran on after the dump
                    raise FerrymanError("criu let the workload go before the commit, so it "
                                        "ran on after its dump",
                                        hint="check why criu died (its log)")
            case Step.RELEASE_LOCK:
                await m.release_network_lock()
            case Step.ENTER_COMMITTED:
                m.phase(S.COMMITTED, "destination resumes the workload" if m.lazy
                        else "destination resumes the workload; the source copy goes")
            case Step.MARK_COMMIT:
                m.mark_commit()
            case Step.SEND_COMMIT:
                await m.ch.send(wire.Commit())
            case Step.SEND_COMMIT_ANYWAY:
                try:
                    await m.ch.send(wire.Commit())
                except PeerLost as exc:
                    # It may or may not have arrived; without it the destination keeps its
                    # copy stopped (an orphan), so destroying ours is still the only safe
                    # choice.
                    m.commit_error = exc
            case Step.WATCH_COMMITTED:
                if m.commit_error is None:  # read at once: CRIU's clean-up is not downtime
                    m.committed = asyncio.ensure_future(m.await_committed())
            case Step.AWAIT_COMMITTED:
                done = await m.await_committed()
                m.report.destination_pid = done.pid
            case Step.FORWARD_INFLIGHT:
                m.forward_inflight()
            case Step.ENTER_SERVING:
                assert done is not None
                m.phase(S.SERVING_PAGES, f"running on {m.report.destination_node} as PID "
                        f"{done.pid}; serving its memory")
