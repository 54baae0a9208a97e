"""How a DESTINATION session ends when it does not end DONE, and what it leaves.

Clean-up (page server, guards, daemons, address, a partial or uncommitted tree, container,
images; the logs kept for the operator), Failed and Abort answered, a source lost after
RESTORED (ORPHANED, or KILLED for a lazy restore), and at agent start the images of sessions
that died without an outcome record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from ferryman import wire
from ferryman.agent import failedlogs
from ferryman.agent.destination_role import DestinationRole
from ferryman.agent.files import image_sets, remove_images
from ferryman.agent.orphans import has_outcome, outcome_of, write_outcome
from ferryman.agent.statelock import in_use
from ferryman.criu.page_server import free_port
from ferryman.errors import CriuError, FerrymanError
from ferryman.host import addresses, portguard, procfs
from ferryman.migration.phases import DestinationPhase

log = logging.getLogger(__name__)
D = DestinationPhase


def remove_incomplete(state_dir: Path) -> list[str]:
    """At agent start: delete the images of sessions that died without an outcome (those
    that died holding a restored tree have one: see orphans.settle_records), and those a
    committed migration still had when its agent died cleaning up (its logs stay)."""
    removed = []
    root = state_dir / "migrations"
    if root.is_dir():
        for d in root.iterdir():
            if not d.is_dir() or in_use(d):  # a migrate command's, running
                continue
            if not has_outcome(state_dir, d.name):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
            elif outcome_of(state_dir, d.name).startswith("DONE") and image_files_left(d):
                remove_images(d)
                removed.append(d.name)
    return removed


def image_files_left(workdir: Path) -> bool:
    return any(p.is_file() and p.name.endswith(".img") for d in image_sets(workdir)
               for p in d.iterdir())


def keep_orphan(s: DestinationRole, exc: BaseException) -> None:
    """Source lost after RESTORED, before COMMIT (the driver entered ORPHANED): keep the
    tree stopped for an operator. (Not a lazily restored one: its memory is on the source,
    with the page server that went with the source; the driver has it KILLED.)"""
    assert s.tree is not None
    assert s.workdir is not None
    if s.box is not None:  # runc keeps the container, stopped, in its slot
        s.box.slot.release(remove=False)
    # The ORPHANED record, with the address, was written at the restore (an operator may
    # have acted on it since); the source copy may run on: it needs the address back.
    if s.address_added and s.moving is not None:
        with contextlib.suppress(FerrymanError):
            addresses.delete(s.moving)
        s.address_added = False
    log.error("source lost after restore, before commit: PID %d kept STOPPED; check the "
              "source, then 'ferryman orphans resume|kill %s' (%s)",
              s.tree.pid, s.workdir.name, exc)


async def orphan(s: DestinationRole, exc: BaseException) -> None:
    """:func:`fail` in RESTORED, outside the driver (a bug, the agent's shutdown). A
    post-copy tree cannot run without the source's pages; a streamed one has them all."""
    if s.ch.conn.lazy and not (s.plan is not None and s.plan.streamed):
        s.tracker.advance(D.KILLED)
        await cleanup(s)
        return
    s.tracker.advance(D.ORPHANED)
    keep_orphan(s, exc)


async def send_failed(s: DestinationRole, code: str, message: str, log_tail: str, *,
                      kept: dict[Path, Path], log_path: str | None = None) -> None:
    """Failed(code) to the source, once cleaned up (``kept``: where the logs went)."""
    if log_path is not None and Path(log_path) in kept:  # name it where it is now
        message = message.replace(log_path, str(kept[Path(log_path)]))
    await s.ch.send(wire.Failed(code=code, message=message, log_tail=log_tail[-60000:]))


async def await_abort(s: DestinationRole) -> None:
    """After our Failed the source answers with Abort (or just goes away). After a bad file
    it may have sent more files and its Restore before it read the Failed: discarded."""
    deadline = time.monotonic() + s.cfg.timeouts.commit
    try:
        while not isinstance(await s.ch.expect(
                (wire.Abort, wire.FileChunk, wire.FileEnd, wire.Restore),
                max(0.0, deadline - time.monotonic())), wire.Abort):
            pass
        await s.ch.send(wire.Aborted())
    except FerrymanError:
        pass


async def fail(s: DestinationRole, exc: BaseException) -> None:
    if s.tracker.phase in (D.DONE, D.REFUSED, D.CLEANED, D.KILLED, D.ORPHANED, D.LOST):
        return
    log.warning("migration failed in %s: %s", s.tracker.phase, exc)
    if s.tracker.phase == D.RESTORED:
        await orphan(s, exc)
        return
    await cleanup(s)
    target = s.tracker.failure_target()
    if target is not None:
        s.tracker.advance(target)


async def guarded_port(s: DestinationRole) -> int:
    """A free port here that only the source (the control connection's address) reaches,
    for a page server or the page relay; its guard goes with the migration's others
    (:func:`remove_guards`)."""
    port = free_port(s.cfg.listen_host)
    guard = portguard.PortGuard(s.cfg.listen_port, port, s.ch.peer_ip)
    await asyncio.to_thread(guard.install)
    s.guards.append(guard)
    return port


async def remove_guards(s: DestinationRole) -> None:
    guards, s.guards = s.guards, []
    for guard in guards:
        await asyncio.to_thread(guard.remove)


async def cleanup(s: DestinationRole, *, keep_logs: bool = False) -> dict[Path, Path]:
    """Stop and remove everything of this migration; returns where each log it kept for
    the operator went (``STATE/failed/ID/``)."""
    if s.page_server is not None:
        await s.page_server.kill()
    if s.relay is not None:
        await s.relay.close()
        s.relay = None
    if s.seal is not None:
        await asyncio.to_thread(s.seal.close)
    await remove_guards(s)
    if s.lazy_end is not None:  # the relay's socket pair, no daemon started on it
        s.lazy_end.sock.close()
        s.lazy_end.daemon.cancel()
        s.lazy_end = None
    if s.early_lazy is not None:  # never used: the migration ended before Restore
        early, s.early_lazy = s.early_lazy, None
        with contextlib.suppress(CriuError, OSError):
            await (await early).kill()
    if s.lazy_pages is not None:
        await s.lazy_pages.kill()
    if s.address_added and s.moving is not None and \
            s.tracker.phase not in (D.COMMITTED, D.DONE, D.FETCHING_PAGES):
        with contextlib.suppress(FerrymanError):
            addresses.delete(s.moving)  # the source takes its address back
        s.address_added = False
    if s.tree is None and s.workdir is not None:
        # A criu restore that died without answering may have forked tasks that live on
        # (still criu, or half restored) with no PID given to us: they hold the images.
        for pid in procfs.holders(s.workdir):
            log.warning("killing PID %d, left in %s by a failed restore", pid,
                        s.workdir)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    killed = s.tree is not None and s.tracker.phase not in (D.COMMITTED, D.DONE)
    if s.tree is not None and killed:
        s.tree.kill()
    if s.box is not None:
        await s.box.cleanup(delete=s.tracker.phase not in (D.COMMITTED, D.DONE))
    # recorded once the container's record is gone too: whoever reads KILLED finds nothing
    # of this migration's copy left here
    if s.tree is not None and killed and s.held and s.workdir is not None:
        write_outcome(s.cfg.state_dir, s.workdir.name, f"KILLED {s.tree.pid}\n")
        s.held = False
    kept: dict[Path, Path] = {}
    if s.workdir is not None and s.workdir.exists():
        if keep_logs:
            remove_images(s.workdir)
        else:
            # Failed migrations leave no images, only the agent's logs for the operator.
            kept = failedlogs.keep(s.workdir, image_sets(s.workdir)[1:],
                                   s.cfg.state_dir / "failed")
            shutil.rmtree(s.workdir, ignore_errors=True)
    return kept

