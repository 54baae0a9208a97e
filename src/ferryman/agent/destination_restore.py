"""The DESTINATION's restore and resume: every image here, the tree restored stopped, held,
then resumed on the source's Commit; the steps, in the order the DESTINATION driver
(migration/destination_driver.py) asks them of agent/destination_drive.py.

Never runs a workload that the source may still resume: the tree is restored with
``--leave-stopped`` and continued only after the Commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable
from pathlib import Path

from ferryman import wire
from ferryman.agent.destination_lazy import lazy_daemon
from ferryman.agent.destination_pages import page_server_exit
from ferryman.agent.destination_role import DestinationRole
from ferryman.agent.fifos import keep_shared_fifo_data
from ferryman.agent.orphans import fetching_record, orphan_record, write_outcome
from ferryman.agent.podman_destination import PodmanDestination
from ferryman.criu.filelocks import dumped_file_locks
from ferryman.criu.logs import tail
from ferryman.criu.stats import RESTORE_STATS, read_stats
from ferryman.criu.taskstate import stopped_pids
from ferryman.errors import CriuError, FileLockBusy, RuncError, TransferError
from ferryman.host import addresses, lockwait
from ferryman.targets.process import ProcessTree

log = logging.getLogger(__name__)


async def _unless_stuck_on_a_lock(s: DestinationRole, criu: list[int],
                                  restoring: Awaitable[int]) -> int:
    """``restoring``'s PID, or FileLockBusy once the restore has waited for a file lock
    (host/lockwait.py): the waiting tasks, which descend from the restoring criu (``criu``
    gets its PID once it runs; never a workload restored earlier), are killed, CRIU's
    restore fails on that and the migration rolls back, the workload resumed on the
    source."""
    assert s.workdir is not None
    task = asyncio.ensure_future(restoring)
    if not dumped_file_locks(s.workdir):
        return await task
    watch = asyncio.ensure_future(lockwait.stuck(criu))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        watch.cancel()
        raise
    if task in done:
        watch.cancel()
        return task.result()
    waits = watch.result()
    for w in waits:
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.pid, signal.SIGKILL)
    with contextlib.suppress(CriuError):
        await task
    paths = sorted({w.path for w in waits})
    raise FileLockBusy(f"the restore on {s.cfg.name} waited for a lock on "
                       f"{', '.join(paths)}: another process holds it there, or the file is "
                       "the one the frozen source still locks (shared storage)",
                       hint="stop what holds the lock there, or move the workload between "
                            "nodes that do not share its lock files")


async def restore(s: DestinationRole, restore_msg: wire.Restore) -> int:
    """Every image is here (``restore_msg`` says so): restore the tree stopped; its PID.
    CriuError, RuncError or OSError when the restore failed (answered with Failed), or
    ImagesDamaged when an image file changed on this disk since it arrived."""
    assert s.workdir is not None
    lazy = s.ch.conn.lazy
    if s.page_server is not None:
        await page_server_exit(s)
    if damage := await _damaged(s, other=True):  # small files: checked before use
        raise ImagesDamaged(_damage_message(s, damage))
    # The page files, the bulk, are checked while CRIU restores the tree: it stays stopped,
    # and is killed (the clean-up kills s.tree) if they changed since they arrived.
    pages_checked = asyncio.ensure_future(_damaged(s, other=False))
    try:
        if lazy:
            s.lazy_pages = await lazy_daemon(s, restore_msg.page_server_port)
        if s.moving is not None:  # the sockets to restore need the address
            addresses.add(s.moving)
            s.address_added = True
        tcp = s.plan is not None and s.plan.tcp_established
        if s.box is None and restore_msg.fifo_devices:
            await asyncio.to_thread(keep_shared_fifo_data, s.workdir,
                                    restore_msg.kernel, restore_msg.fifo_devices)
        if isinstance(s.box, PodmanDestination) and tcp:
            await s.box.before_restore(s.workdir)  # connections behind its DNAT
        if s.reserve is not None:  # the tree's memory takes it now
            s.reserve.release()
        if s.box is not None:
            pid = await s.box.restore(s.workdir, lazy=lazy, tcp_established=tcp)
        else:
            criu: list[int] = []  # the restoring criu's PID, once it runs
            pid = await _unless_stuck_on_a_lock(s, criu, s.criu.restore(
                s.workdir, leave_stopped=True, lazy=lazy, tcp_established=tcp,
                on_started=criu.append))
    except (CriuError, RuncError, OSError) as exc:
        if damage := await pages_checked:  # the cause, rather than what it made CRIU do
            raise ImagesDamaged(_damage_message(s, damage)) from exc
        raise
    except BaseException:  # any other end of the restore: the page check is not awaited
        pages_checked.cancel()
        raise
    if damage := await pages_checked:  # restored from damaged pages: never resumed
        s.tree = ProcessTree.of(pid)  # (the clean-up kills it)
        raise ImagesDamaged(_damage_message(s, damage))
    if isinstance(s.box, PodmanDestination) and s.moving is not None:
        s.box.nat_arrives(s.moving.ip)
    if s.moving is not None:  # in a thread: closing the raw socket waits for an
        # RCU grace period (tens of ms) that the frozen window need not include
        announcing = asyncio.ensure_future(asyncio.to_thread(addresses.announce, s.moving))
        announcing.add_done_callback(_announced)
    return pid


def failure_details(exc: BaseException) -> tuple[str, str, str | None]:
    """A failed restore's message, the tail of its log and the log's path."""
    log_path = getattr(exc, "log_path", None)
    log_tail = tail(Path(log_path)) if log_path else ""
    return getattr(exc, "message", str(exc)), log_tail, log_path


def take_while_fetching(s: DestinationRole, pid: int) -> None:
    """A streamed restore's tree, restored stopped, its pages still coming: taken at once
    (a failed fetch's clean-up kills it) and recorded FETCHING (an agent that restarts
    kills it; the clean-up's KILLED replaces the record), until :func:`hold`."""
    assert s.workdir is not None
    s.tree = ProcessTree.of(pid)
    write_outcome(s.cfg.state_dir, s.workdir.name, fetching_record(
        s.tree.root, s.moving if s.address_added else None))
    s.held = True


def hold(s: DestinationRole, pid: int) -> asyncio.Future[frozenset[int]]:
    """Restored, stopped: held from here until the commit, kept so should this agent die
    meanwhile (a restarted agent lists it, agent/orphans.py settle_records, never loses
    it); returns the tasks to leave stopped at the resume (read while the commit comes)."""
    assert s.workdir is not None
    if s.tree is None:  # (a streamed restore took it at once: a failed fetch kills it)
        s.tree = ProcessTree.of(pid)
    keep_stopped = asyncio.ensure_future(asyncio.to_thread(stopped_pids, s.workdir))
    write_outcome(s.cfg.state_dir, s.workdir.name, orphan_record(
        s.tree.root, s.moving if s.address_added else None))
    s.held = True
    return keep_stopped


async def send_restored(s: DestinationRole) -> None:
    assert s.workdir is not None
    assert s.tree is not None
    pid = s.tree.pid
    stats = read_stats(s.workdir / RESTORE_STATS)
    log.info("restored migration %s as PID %d (stopped)", s.workdir.name, pid)
    if s.cfg.test_pause_after_restore:
        await asyncio.sleep(s.cfg.test_pause_after_restore)
    await s.ch.send(wire.Restored(pid=pid, stats=stats))


async def resume(s: DestinationRole, keep_stopped: asyncio.Future[frozenset[int]]) -> None:
    """The source's Commit: resume the tree (tasks stopped at the source stay stopped)."""
    assert s.workdir is not None
    assert s.tree is not None
    pid = s.tree.pid
    s.tree.resume(keep_stopped=await keep_stopped)
    # the workload's clock starts here: its post-resume stall is measured from this line
    log.info("migration %s: PID %d resumed", s.workdir.name, pid)
    write_outcome(s.cfg.state_dir, s.workdir.name, f"COMMITTED {pid}\n")
    s.held = False


DAMAGED = "image-damaged"


class ImagesDamaged(TransferError):
    """An image file changed on this node's disk since it arrived: the restore is refused
    (answered with ``Failed(image-damaged)``), the source resumes."""

    def __init__(self, message: str) -> None:
        super().__init__(DAMAGED, message)


async def _damaged(s: DestinationRole, *, other: bool) -> list[str]:
    """The image files (page files, or ``other`` than those) that changed on this node's
    disk since they arrived (agent/imageseal.py)."""
    if s.seal is None:
        return []
    which = s.seal.other_files() if other else s.seal.page_files()
    return await asyncio.to_thread(s.seal.verify, which)


def _damage_message(s: DestinationRole, damage: list[str]) -> str:
    more = f" and {len(damage) - 3} more" if len(damage) > 3 else ""
    return (f"{', '.join(damage[:3])}{more} changed on {s.cfg.name}'s disk since it arrived: "
            "not restored; check that node's disk and try again")


def _announced(task: asyncio.Future[None]) -> None:
    """The gratuitous ARP is a courtesy to clients' neighbour caches: a failure is logged."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not announce the moved address: %s", task.exception())
