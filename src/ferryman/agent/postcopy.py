"""The SOURCE's post-copy: freeze, ship the small images, restore remotely, serve the pages.

Lazy dumps keep the memory here: CRIU's page server serves it to the destination's lazy-pages
daemon, on faults and in the background, until the destination reports PagesComplete. The
commit comes before the page tail (the restore itself faults pages in); after it a broken
link loses the workload, which is reported (WorkloadLost, exit 9), never left half-alive.
Used for ``--mode postcopy`` and for the lazy final step of pre-copy (hybrid).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ferryman import wire
from ferryman.agent.container import source_presync
from ferryman.criu.client import PageServerAddress, TlsFiles
from ferryman.criu.page_server import free_port
from ferryman.criu.taskstate import stopped_pids
from ferryman.errors import FerrymanError, NoSuchProcess, WorkloadLost
from ferryman.host import procfs, sourcecopy
from ferryman.migration.phases import SourcePhase

if TYPE_CHECKING:
    from ferryman.agent.source import SourceMigration

S = SourcePhase
log = logging.getLogger(__name__)


async def run_postcopy(m: SourceMigration) -> None:
    """Freeze, ship the non-memory images, restore remotely, serve pages until done.

    The destination's restore already faults pages in, so CRIU's page server must serve
    during the restore. Until the commit, a failure is rolled back by stopping CRIU:
    killing it detaches the frozen tasks, which then simply continue here (their memory
    never left). Once the destination has failed it kills its lazy-pages daemon without
    a TLS close, so CRIU's page server itself ends in error and resumes the tasks too.
    """
    o = m.o
    assert m.ch is not None
    c = o.creds
    if m.box is not None:  # the container's files, while it runs
        await source_presync(m, m.box, m.sync_port)
    address = m.ch.local_ip
    m.ps_port = m.ps_port or free_port(address)  # the Plan named it
    m._phase(S.FREEZING, f"dumping PID {o.pid} (memory stays here, served lazily)")
    m.freeze_at = time.monotonic()
    cgroup = m._find_freezer()
    dump = asyncio.ensure_future(m.dumper.dump(
        o.pid, m.workdir, page_server=PageServerAddress(address, m.ps_port),
        tls=TlsFiles(cacert=c.ca, cert=c.cert, key=c.key), lazy=True,
        on_notify=m._on_notify, freeze_cgroup=cgroup,
        tcp_established=o.tcp_established, track_mem=m.parent is not None,
        parent=m.parent))
    step: asyncio.Future[Any] = asyncio.ensure_future(m.serving.wait())
    try:
        await asyncio.wait({dump, step}, return_when=asyncio.FIRST_COMPLETED)
        if not m.serving.is_set():
            dump.result()  # raises the reason it stopped before serving
            raise FerrymanError("criu ended the lazy dump before serving any page")
        step = asyncio.ensure_future(m._await_restored())
        await asyncio.wait({dump, step}, return_when=asyncio.FIRST_COMPLETED)
        if not step.done():
            # The lazy dump ended first: CRIU failed (raised here), or its client closed the
            # session in order: every page went (a small lazy set, as after pre-dumps) or
            # the restore failed. The destination's answer decides; the tree waits stopped.
            dump.result()
        await step
        await _lazy_commit(m)
    except (FerrymanError, OSError) as exc:
        if m.tracker.phase in (S.COMMITTED, S.SERVING_PAGES):
            await lost(m, exc, dump)
        dump.cancel()  # criu is killed; the tasks it held continue here
        step.cancel()  # a read for Restored may still wait: the roll-back reads Aborted
        await asyncio.gather(dump, step, return_exceptions=True)
        _continue_left_stopped(m)
        await m._roll_back(exc)
        return
    finally:
        step.cancel()
    await _page_tail(m, dump)


async def _lazy_commit(m: SourceMigration) -> None:
    """Point of no return for post-copy: the destination runs the workload from now on."""
    assert m.ch is not None
    assert m.tree is not None
    # Should CRIU resume the source tasks after a broken page tail, their queued SIGSTOP
    # stops them before they run a single instruction (and they are then killed).
    m._queue_stop_source()
    await m.release_network_lock()
    sourcecopy.mark_commit(m.workdir)
    await m.ch.send(wire.Commit())
    m.forward_inflight()
    m._phase(S.COMMITTED, "destination resumes the workload")
    done = await m.ch.expect((wire.Committed,), m.o.timeouts.commit)
    m.report.downtime_ms = (time.monotonic() - (m.freeze_at or 0)) * 1000
    m.report.destination_pid = done.pid
    m._phase(S.SERVING_PAGES, f"running on {m.report.destination_node} as PID "
             f"{done.pid}; serving its memory")


async def _page_tail(m: SourceMigration, dump: asyncio.Future[None]) -> None:
    """Wait for the destination's PagesComplete while CRIU serves the pages."""
    assert m.ch is not None
    done = asyncio.ensure_future(m.ch.expect((wire.PagesComplete,), m.o.timeouts.page_tail))
    futures: tuple[asyncio.Future[object], ...] = (dump, done)  # type: ignore[assignment]
    try:
        # Either may finish first; a failure of either one is fatal.
        while not all(f.done() for f in futures):
            await asyncio.wait([f for f in futures if not f.done()],
                               return_when=asyncio.FIRST_COMPLETED)
            for f in futures:
                if f.done():
                    f.result()
    except (FerrymanError, OSError) as exc:
        await lost(m, exc, dump)
    finally:
        done.cancel()
    msg = done.result()
    assert m.tree is not None
    await asyncio.to_thread(m.tree.kill)  # CRIU left the served source copy stopped
    m.report.memory_complete_ms = float(msg.elapsed_ms)
    m.report.lazy_pages = msg.pages
    m.report.lazy_faults = msg.faults
    m.report.lazy_fault_wait_ms = float(msg.fault_wait_ms)
    m.report.lazy_fault_max_ms = float(msg.fault_max_ms)
    m.report.count_pages(msg.bytes)
    m.report.result = "committed"
    m._collect_dump_stats(lazy=True)
    m._phase(S.DONE, f"all {msg.pages} pages arrived in {msg.elapsed_ms} ms")


def _continue_left_stopped(m: SourceMigration) -> None:
    """Before the commit: a lazy dump that ended on its own (the destination's lazy-pages
    daemon closed the session after its restore failed) left the tree stopped
    (criu/client.py); continue it, except the tasks that were stopped when dumped."""
    assert m.tree is not None
    stopped = [p for p in m.tree.pids() if _stopped(p)]
    if stopped:
        n = m.tree.resume(keep_stopped=stopped_pids(m.workdir), only=stopped)
        log.info("continued %d source tasks the lazy dump left stopped", n)


def _stopped(pid: int) -> bool:
    try:
        return procfs.state(pid) == "T"
    except NoSuchProcess:
        return False


async def lost(m: SourceMigration, exc: BaseException, dump: asyncio.Future[None]) -> None:
    """After the commit the workload lives on the destination; a broken tail loses it."""
    assert m.tree is not None
    dump.cancel()  # kills criu; the source tasks have a SIGSTOP queued and stay stopped
    await asyncio.gather(dump, return_exceptions=True)
    m.tree.kill()
    m._phase(S.LOST, str(exc))
    m.report.result = "lost"
    raise WorkloadLost(m.o.pid, getattr(exc, "message", str(exc))) from exc


async def announce_restore(m: SourceMigration) -> bool:
    """status-ready: our page server listens; the destination may restore now."""
    assert m.ch is not None
    await m.ch.send(m.restore_message(m.ps_port))
    m.find_network_lock()
    m.serving.set()
    return True
