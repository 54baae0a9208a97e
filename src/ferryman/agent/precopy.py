"""The SOURCE's pre-copy iterations: pre-dump into the destination until the policy stops.

Each iteration is a ``criu pre-dump --track-mem`` of the running workload (``runc checkpoint
--pre-dump`` for a container; frozen only while CRIU collects its page map, milliseconds)
streaming the pages into a page server the
destination opened for that image set; set ``pre-K`` is the child of ``pre-(K-1)`` on both
nodes, so each one carries only what the workload dirtied since. After every pre-dump the
convergence policy (pure, :mod:`ferryman.migration.convergence`) says ITERATE, FINAL or
SWITCH_TO_POSTCOPY; then the source asks for the final set (an ``Iterate(final=True)``,
lazy when switching or in hybrid mode) and the usual final dump follows, with ``pre-N`` as
its parent. Nothing is frozen between iterations: a failure here is rolled back by telling
the destination to drop its image sets; the workload never stopped running. The loop and
its decisions are the SOURCE driver's (migration/source_driver.py, with the policy's
history in migration/iterations.py); this module sends, reads and pre-dumps for it.

The dirty pages come from the kernel's soft-dirty bits, or, on kernels without them, from
userfaultfd async write-protect (``report.dirty_tracker == "uffd-wp"``): then the agent holds
one userfaultfd per process of the tree (:class:`ferryman.host.wptrack.WriteTracker`), armed
before each pre-dump (new processes and mappings registered, to be sent whole once) and
released when the migration ends, and every CRIU dump is told ``track_mem_uffd``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

from ferryman import wire
from ferryman.agent.files import SET_PREFIX, Receiver, set_name
from ferryman.agent.session import abort
from ferryman.criu.client import PageServerAddress, TlsFiles
from ferryman.criu.stats import DUMP_STATS, read_stats
from ferryman.errors import FerrymanError, TransferError
from ferryman.host import wptrack
from ferryman.host.wptrack import WriteTracker
from ferryman.migration.convergence import IterationStats, from_criu_stats

if TYPE_CHECKING:
    from ferryman.agent.role import SourceRole

__all__ = ["abandon", "next_set", "pre_dump"]

log = logging.getLogger(__name__)


async def next_set(role: SourceRole, msg: wire.Iterate) -> wire.Ready:
    """Ask the destination for the page server of the next image set (port 0: lazy).

    Before a lazy final set the destination sends back the page maps of its sets, as
    ``pre-K.NAME``: they go into our ``pre-K`` (see
    :func:`ferryman.agent.destination_pages.send_page_maps`).
    """
    assert role.ch is not None
    await role.ch.send(msg)
    staging = role.workdir / "page-maps"
    staging.mkdir(exist_ok=True)
    receiver = Receiver(staging)
    try:
        while True:
            got = await role.ch.expect((wire.Ready, wire.FileChunk, wire.FileEnd),
                                    role.opts.timeouts.plan)
            if isinstance(got, wire.Ready):
                break
            receiver.take(got)
    except TransferError as exc:
        raise FerrymanError(f"page maps from the destination: {exc}") from exc
    finally:
        receiver.close()
    for name in receiver.done:
        set_dir, _, file = name.partition(".")
        target = role.workdir / set_dir
        if not (set_dir.startswith(SET_PREFIX) and target.is_dir() and file):
            raise FerrymanError(f"page maps from the destination: unexpected file {name!r}")
        (staging / name).rename(target / file)
    staging.rmdir()
    return got


async def pre_dump(role: SourceRole, index: int, port: int) -> IterationStats:
    creds = role.opts.creds
    images = role.workdir / set_name(index)
    images.mkdir()
    role.opts.progress("ITERATING", f"pre-dump {index} while the workload runs")
    t0 = time.monotonic()
    armed = await arm_tracker(role)
    await role.dumper.dump(role.pid, images, pre_dump=True, track_mem=True,
                           track_mem_uffd=armed,
                           parent=f"../{set_name(index - 1)}" if index > 1 else None,
                           page_server=PageServerAddress(role.opts.host, port),
                           tls=TlsFiles(cacert=creds.ca, cert=creds.cert, key=creds.key),
                           log_file="pre-dump.log")
    seconds = time.monotonic() - t0
    stats = read_stats(images / DUMP_STATS)
    it = from_criu_stats(index, stats, seconds)
    role.report.iterations.append({**asdict(it), "frozen_ms": stats.get("frozen_time", 0) / 1000,
                                "predicted_downtime_ms": None})
    role.report.count_pages()
    role.opts.progress("ITERATING", f"pre-dump {index}: {it.pages_written} pages written, "
                       f"{it.pages_skipped} unchanged, {seconds:.2f} s")
    log.info("pre-dump %d: %d pages written, %d skipped, %.3f s", index, it.pages_written,
             it.pages_skipped, seconds)
    return it


async def arm_tracker(role: SourceRole) -> bool:
    """uffd-wp tracking: make every process of the tree tracked before a pre-dump (the
    first call creates the tracker). False with soft-dirty, which needs no arming."""
    if role.report.dirty_tracker != wptrack.TRACKER:
        return False
    if role.write_tracker is None:
        role.write_tracker = WriteTracker()
    tracker = role.write_tracker
    assert role.tree is not None
    pids = role.tree.pids()
    t0 = time.monotonic()
    stats = await asyncio.to_thread(tracker.arm, pids)
    log.info("uffd-wp tracker armed on %d processes in %.1f ms (%d new, %d mappings "
             "registered, %d refused by the kernel)", stats.processes,
             (time.monotonic() - t0) * 1000, stats.new_processes, stats.new_mappings,
             stats.refused_mappings)
    return True


async def abandon(role: SourceRole, exc: BaseException) -> None:
    """A failed iteration: the workload runs on; the destination drops its sets."""
    ch = role.ch
    if ch is not None and ch.conn.state in wire.ABORTABLE_STATES:
        await abort(ch, str(exc))
