"""The SOURCE's post-copy: what only a lazy final dump needs of the agent.

Lazy dumps keep the memory here: CRIU's page server serves it to the destination's lazy-pages
daemon, on faults and in the background, until the destination reports PagesComplete. The
commit comes before the page tail (the restore itself faults pages in); after it a broken
link loses the workload, which is reported (WorkloadLost, exit 9), never left half-alive.
Used for ``--mode postcopy`` and for the lazy final step of pre-copy (hybrid). The order of
it all is the SOURCE driver's (migration/source_driver.py); until the commit a failure is
rolled back by stopping CRIU: killing it detaches the frozen tasks, which then simply
continue here (their memory never left), and :func:`continue_left_stopped` continues those
that a lazy dump which ended by itself left stopped.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

from ferryman.criu.taskstate import stopped_pids
from ferryman.errors import NoSuchProcess
from ferryman.host import procfs

if TYPE_CHECKING:
    from ferryman.agent.role import SourceRole

__all__ = ["continue_left_stopped"]

log = logging.getLogger(__name__)
SIGSTOP_BIT = 1 << (signal.SIGSTOP - 1)  # in procfs.pending_signals' mask


def continue_left_stopped(role: SourceRole) -> None:
    """Before the commit: a lazy dump that ended on its own (the destination's lazy-pages
    daemon closed the session after its restore failed) left the tree stopped
    (criu/client.py); continue it, except the tasks that were stopped when dumped."""
    assert role.tree is not None
    role.thaw()  # a tree in a cgroup we froze shows no stopped task until it is thawed
    stopped = [p for p in role.tree.pids() if _stopped(p)]
    if stopped:
        n = role.tree.resume(keep_stopped=stopped_pids(role.workdir), only=stopped)
        log.info("continued %d source tasks the lazy dump left stopped", n)


def _stopped(pid: int) -> bool:
    """Stopped, or about to be: a SIGSTOP still pending (a tree just thawed, or just let go
    by the CRIU we killed, has not taken it yet). SIGCONT discards a pending stop."""
    try:
        return procfs.state(pid) == "T" or bool(procfs.pending_signals(pid) & SIGSTOP_BIT)
    except NoSuchProcess:
        return False
