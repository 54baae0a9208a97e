"""The DESTINATION's lazy-pages daemon: started early, handed to the restore, and the
post-copy tail (the workload runs here while its remaining pages arrive).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from ferryman import wire
from ferryman.agent import pagerelay
from ferryman.agent.destination_end import guarded_port
from ferryman.agent.destination_role import DestinationRole, LazyRelayEnd
from ferryman.agent.orphans import write_outcome
from ferryman.criu.page_server import (
    CriuDaemon,
    lazy_fault_waits,
    lazy_pages_transferred,
    start_lazy_pages,
)
from ferryman.errors import CriuError, FerrymanError, PeerLost
from ferryman.host.pages import PAGE_SIZE
from ferryman.pki import tls

log = logging.getLogger(__name__)


class SourceAborted(FerrymanError):
    """The source sent Abort while every page was being fetched (a streamed restore, before
    its Restored): the driver answers it as any Abort."""


async def start_lazy_relay(s: DestinationRole) -> int:
    """Post-copy through ferryman's page relay (a Plan with ``lazy_relay``): its TLS port,
    behind a guard that lets only the source (the control connection's address) reach it.
    The relay feeds one end of a socket pair; the lazy-pages daemon gets the other when it
    starts (:func:`start_lazy_early`), and the relay ends when the daemon exits. Where this
    node's criu decodes the relay's frames itself, the relay passes them on as they came
    (they stay compressed up to the daemon's own buffer)."""
    port = await guarded_port(s)
    frames = "relay_frames" not in s.cfg.hidden_features and \
        (await s.criu.probes()).get("relay_frames", False)
    theirs, ours = pagerelay.socket_pair()
    end = s.lazy_end = LazyRelayEnd(theirs, frames)

    async def daemon_exited() -> None:
        daemon = await asyncio.shield(end.daemon)  # until it starts, nothing reads pages
        await daemon.proc.wait()

    s.relay = pagerelay.RelayServer(tls.server_context(s.cfg.creds), s.ch.peer, ours,
                                    daemon_exited, decode=not frames)
    await s.relay.start(s.cfg.listen_host, port)
    return port


def start_lazy_early(s: DestinationRole) -> None:
    """Post-copy: the images CRIU's lazy-pages daemon reads when it starts are here (the
    source sends them first); start it while the rest arrive, on the Plan's port or on the
    page relay's socket pair."""
    plan = s.plan
    if plan is None or s.early_lazy is not None:
        return
    assert s.workdir is not None
    if s.lazy_end is not None:  # the relay's socket pair (post-copy, or hybrid's final step)
        end, s.lazy_end = s.lazy_end, None
        s.early_lazy = asyncio.ensure_future(_start_on_relay(s, s.workdir, end))
        return
    if not plan.lazy_dump or not plan.page_server_port:
        return
    s.early_lazy = asyncio.ensure_future(start_lazy_pages(
        s.criu.binary, s.workdir, address=s.ch.peer_ip,
        port=plan.page_server_port, tls=s.tls))


async def _start_on_relay(s: DestinationRole, workdir: Path, end: LazyRelayEnd) -> CriuDaemon:
    try:
        daemon = await start_lazy_pages(s.criu.binary, workdir, sock_fd=end.sock.fileno(),
                                        frames=end.frames)
    except asyncio.CancelledError:
        end.daemon.cancel()
        raise
    except Exception as exc:
        if not end.daemon.done():
            end.daemon.set_exception(exc)  # the relay ends: no daemon will read
            end.daemon.exception()  # retrieved: the caller reports it
        raise
    finally:
        end.sock.close()  # the daemon's now: its exit closes the relay's stream
    end.daemon.set_result(daemon)
    return daemon


async def lazy_daemon(s: DestinationRole, port: int) -> CriuDaemon:
    """The lazy-pages daemon for the source's page server at ``port``: the one started
    early if it runs on that port, else a new one. Through the page relay, only the one
    started early: the relay's socket pair was its."""
    assert s.workdir is not None
    if s.plan is not None and s.plan.lazy_relay:
        if s.early_lazy is None:
            start_lazy_early(s)  # the images arrived without a pstree.img first
        early, s.early_lazy = s.early_lazy, None
        if early is None:
            raise FerrymanError("the lazy-pages daemon's relay socket is gone")
        return await early
    early, s.early_lazy = s.early_lazy, None
    if early is not None:
        try:
            daemon = await early
        except (CriuError, OSError) as exc:
            log.info("the lazy-pages daemon started early failed (%s): starting again",
                     exc)
        else:
            if daemon.running and s.plan is not None and \
                    s.plan.page_server_port == port:
                return daemon
            await daemon.kill()
    return await start_lazy_pages(s.criu.binary, s.workdir, address=s.ch.peer_ip,
                                  port=port, tls=s.tls)


async def wait_for_pages(s: DestinationRole, daemon: CriuDaemon) -> None:
    """Post-copy tail: the lazy-pages daemon exits once it has every page.

    The control channel is watched at the same time: losing the source now loses the
    workload (its memory is split between the nodes), so the driver has the tree killed
    (:func:`kill_tail`), never left hanging on a fault that cannot be served.
    """
    done = asyncio.ensure_future(daemon.wait(s.cfg.timeouts.page_tail))
    watch = asyncio.ensure_future(s.ch.receive(s.cfg.timeouts.page_tail))
    try:
        await asyncio.wait({done, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            exc = watch.exception() if not watch.cancelled() else None
            if exc is None and isinstance(watch.result(), wire.Abort):
                raise SourceAborted("the source aborted the migration while the pages came")
            raise PeerLost(s.ch.peer, f"control connection lost during the page tail: "
                           f"{exc or 'unexpected message'}")
        done.result()  # raises CriuError when the daemon failed
    finally:
        for task in (done, watch):
            task.cancel()
        await asyncio.gather(done, watch, return_exceptions=True)


async def kill_tail(s: DestinationRole, daemon: CriuDaemon, exc: BaseException) -> None:
    """A broken page tail: the workload is LOST (the driver entered it): kill the daemon and
    the tree, tell the source, record it."""
    assert s.tree is not None
    assert s.workdir is not None
    log.error("workload PID %d LOST during the post-copy tail: %s", s.tree.pid, exc)
    await daemon.kill()
    s.tree.kill()
    with contextlib.suppress(FerrymanError):
        await s.ch.send(wire.Error(code="lost", message=str(exc)[:4000]))
    write_outcome(s.cfg.state_dir, s.workdir.name, f"LOST {s.tree.pid}\n")


async def send_pages_complete(s: DestinationRole, daemon: CriuDaemon, resumed_at: float,
                              elapsed_ms: int | None = None) -> None:
    """PagesComplete: the tail's measures (``elapsed_ms``: a streamed restore's fetch, which
    ended before the resume; else the time since ``resumed_at``)."""
    copied, _total, faults = lazy_pages_transferred(daemon.log_path)
    waited, longest = lazy_fault_waits(daemon.log_path)
    elapsed = elapsed_ms if elapsed_ms is not None else \
        int((time.monotonic() - resumed_at) * 1000)
    log.info("all %d lazy pages arrived in %d ms (%d faults, %.0f ms waited on them, "
             "%.0f ms the longest)", copied, elapsed, faults, waited, longest)
    await s.ch.send(wire.PagesComplete(pages=copied, bytes=copied * PAGE_SIZE, faults=faults,
                                       elapsed_ms=elapsed, fault_wait_ms=round(waited),
                                       fault_max_ms=round(longest)))
