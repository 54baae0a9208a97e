"""The DESTINATION role: receive one migration, restore it stopped, resume it on commit.

Never runs a workload that the source may still resume: the tree is restored with
``--leave-stopped`` and continued only after the source's Commit. Before RESTORED every
failure cleans up (page server stopped, partial tree killed, images removed). A source lost
after RESTORED but before Commit leaves the tree stopped (ORPHANED) for an operator.
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

from ferryman import testhooks, wire
from ferryman.agent import failedlogs
from ferryman.agent.channel import Channel
from ferryman.agent.config import AgentConfig
from ferryman.agent.container import DestinationContainer, with_tools
from ferryman.agent.fifos import keep_shared_fifo_data
from ferryman.agent.files import (
    EMPTY_SHA256,
    Receiver,
    file_messages,
    image_sets,
    remove_images,
    set_name,
)
from ferryman.agent.hello import (
    identity_mismatch,
    local_hello,
    node_features,
)
from ferryman.agent.limits import Slots
from ferryman.agent.orphans import has_outcome, orphan_record, write_outcome
from ferryman.agent.podman import PodmanDestination, destination_prepare
from ferryman.agent.preflight import serve_checks
from ferryman.criu.client import Criu, TlsFiles
from ferryman.criu.logs import tail
from ferryman.criu.page_server import (
    CriuDaemon,
    free_port,
    lazy_fault_waits,
    lazy_pages_transferred,
    start_lazy_pages,
    start_page_server,
)
from ferryman.criu.stats import RESTORE_STATS, read_stats
from ferryman.criu.taskstate import stopped_pids
from ferryman.errors import (
    CriuError,
    CriuFeatureMissing,
    FerrymanError,
    PeerLost,
    Refusal,
    RemoteError,
    RuncError,
    TransferError,
)
from ferryman.host import addresses, portguard, procfs
from ferryman.host.pages import PAGE_SIZE
from ferryman.migration.phases import (
    DESTINATION_TABLE,
    DestinationPhase,
    PhaseTracker,
)
from ferryman.migration.plan import postcopy_blocker
from ferryman.mode import MODES
from ferryman.targets.process import ProcessTree

log = logging.getLogger(__name__)
LAZY_START_AFTER = "pstree.img"  # agent/files.py sends the lazy-pages daemon's images first
D = DestinationPhase
SUPPORTED_MODES = MODES  # every mode: this agent implements them all


def read_rate(images: Path, chunk: int = 4 << 20) -> int:
    """Bytes per second reading an image set's page files into fresh memory; 0 if empty.

    A restore reads every page from the image chain into memory the new process has never
    touched: each chunk goes into a new buffer, so the page faults of that memory count too.
    """
    total = 0
    t0 = time.monotonic()
    for p in images.glob("pages-*.img"):
        with p.open("rb", buffering=0) as fh:
            while n := fh.readinto(bytearray(chunk)):
                total += n
    took = time.monotonic() - t0
    return int(total / took) if total and took > 0 else 0


def remove_incomplete(state_dir: Path) -> list[str]:
    """At agent start: delete the images of sessions that died without an outcome (those
    that died holding a restored tree have one: see orphans.settle_records)."""
    removed = []
    root = state_dir / "migrations"
    if root.is_dir():
        for d in root.iterdir():
            if d.is_dir() and not has_outcome(state_dir, d.name):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
    return removed


class DestinationSession:
    def __init__(self, channel: Channel, config: AgentConfig, criu: Criu,
                 migrations: Slots | None = None) -> None:
        self.ch = channel
        self.cfg = config
        self.criu = criu
        self.migrations = migrations or Slots(config.limits.migrations)  # the agent's
        self.migrating = False  # holds one of them
        self.tracker = PhaseTracker(DESTINATION_TABLE, D.HELLO, time.monotonic,
                                    on_enter=testhooks.pause_hook())
        self.workdir: Path | None = None
        self.page_server: CriuDaemon | None = None
        self.lazy_pages: CriuDaemon | None = None
        self.early_lazy: asyncio.Future[CriuDaemon] | None = None  # started on pstree.img
        self.moving: addresses.MoveAddress | None = None
        self.address_added = False
        self.tree: ProcessTree | None = None
        self.plan: wire.Plan | None = None
        self.sets = 0  # pre-copy: image sets pre-1 .. pre-N received so far (their pages)
        self.guards: list[portguard.PortGuard] = []  # page-server ports only the source reaches
        self.box: DestinationContainer | None = None  # a runc container arriving
        self.held = False  # an ORPHANED record names our restored, uncommitted tree
        self.sync_port = 0

    @property
    def tls(self) -> TlsFiles:
        c = self.cfg.creds
        return TlsFiles(cacert=c.ca, cert=c.cert, key=c.key)

    async def run(self) -> None:
        t = self.cfg.timeouts
        try:
            hello = await self.ch.expect((wire.Hello,), t.hello)
            if (why := identity_mismatch(hello.node, self.ch.peer)) is not None:
                log.warning("session from %s refused: %s", self.ch.peer, why)
                await self.ch.send(wire.Error(code="identity", message=why))
                return
            await self.ch.send(with_tools(await local_hello(
                self.criu, self.cfg.name, self.cfg.state_dir, self.cfg.hidden_features), self.cfg))
            plan = await serve_checks(self.ch, hello, self.cfg, self.criu, SUPPORTED_MODES)
            if plan is None:
                return  # pre-flight check only (ferryman check): nothing was planned
            self.plan = plan
            try:
                port = await self._prepare(hello, plan)
            except Refusal as exc:
                log.warning("refused migration %s: %s", plan.migration_id, exc)
                await self._cleanup()  # first: the peer may be gone, and the send fail
                self.tracker.advance(D.REFUSED)
                await self.ch.send(wire.Refused(code=exc.code, message=str(exc)))
                return
            self.tracker.advance(D.READY)
            await self.ch.send(wire.Ready(page_server_port=port, sync_port=self.sync_port))
            await self._receive_and_restore()
        except (FerrymanError, OSError) as exc:
            await self._fail(exc)
        except asyncio.CancelledError:
            await self._fail(PeerLost(self.ch.peer, "agent shutting down"))
            raise
        except Exception as exc:  # a bug of ours: clean up and say so, then let it show
            log.exception("session from %s broke", self.ch.peer)
            await self._fail(exc)
            with contextlib.suppress(FerrymanError):
                await self.ch.send(wire.Error(code="internal", message=f"{self.cfg.name}: "
                                              f"internal error ({type(exc).__name__}); see "
                                              f"its log"))
            raise
        finally:
            if self.migrating:
                self.migrations.give_back()
            await self.ch.close()

    async def _prepare(self, hello: wire.Hello, plan: wire.Plan) -> int:
        if plan.mode not in SUPPORTED_MODES:
            raise Refusal("mode", f"this agent does not support mode {plan.mode!r} yet")
        if not self.migrations.take():
            raise Refusal("busy", f"{self.cfg.name} already runs {self.migrations.limit} "
                          "migrations, its limit: try again once one has finished (or raise "
                          "'ferryman serve --max-migrations' there)")
        self.migrating = True
        if plan.move_address:
            try:
                moving = addresses.parse_move_address(plan.move_address)
            except FerrymanError as exc:
                raise Refusal("address", exc.message) from exc
            if (why := addresses.move_refusal(moving, self.cfg.movable, self.cfg.name)):
                raise Refusal("address", why)
            if addresses.present(moving.ip):
                raise Refusal("address", f"{moving.ip} is already present on {self.cfg.name}: "
                              "remove it there, or move another address")
            if not addresses.has_device(moving.dev):
                raise Refusal("address", f"{self.cfg.name} has no device {moving.dev}")
            self.moving = moving
        if plan.lazy and (why := await self._lazy_blocker()) is not None:
            raise Refusal("feature", why)
        workdir = self.cfg.state_dir / "migrations" / plan.migration_id
        try:
            workdir.mkdir(parents=True, mode=0o700)
        except FileExistsError as exc:
            raise Refusal("duplicate", f"migration {plan.migration_id} exists here") from exc
        self.workdir = workdir
        (workdir / "cpuinfo.img").write_bytes(hello.cpuinfo)
        why = await self.criu.cpuinfo_check(workdir)
        (workdir / "cpuinfo.img").unlink()
        if why is not None:
            raise Refusal("cpu", f"the source's CPU is not compatible with this one: {why}")
        if plan.target:
            try:
                self.box, self.sync_port = await destination_prepare(self.cfg, plan.target,
                                                                     self.ch.peer)
            except FerrymanError as exc:
                raise Refusal("runc", exc.one_line()) from exc
        if plan.lazy:
            # Pages come from the source's page server, on demand. (The lazy-pages daemon
            # cannot start earlier than the Restore: it reads the images when it starts.)
            return 0
        try:
            if plan.mode.pre_copies:
                return await self._open_set(None)
            return await self._start_page_server(workdir, None)
        except FerrymanError as exc:  # CRIU's or the guard's: this node cannot receive now
            raise Refusal("page-server", exc.one_line()) from exc

    async def _lazy_blocker(self) -> str | None:
        """Why lazy pages cannot work on this node, or None."""
        _, features = await node_features(self.criu, self.cfg.state_dir,
                                          self.cfg.hidden_features)
        return postcopy_blocker(features, self.cfg.name)

    async def _start_page_server(self, images: Path, parent: str | None) -> int:
        """CRIU's page server for one dump, behind a guard that lets only the source (the
        control connection's address) reach it: it serves the first connection it gets."""
        port = free_port(self.cfg.listen_host)
        guard = portguard.PortGuard(self.cfg.listen_port, port, self.ch.peer_ip)
        await asyncio.to_thread(guard.install)
        self.guards.append(guard)
        self.page_server = await start_page_server(self.criu.binary, images,
                                                   self.cfg.listen_host, port, self.tls,
                                                   parent=parent)
        return port

    async def _open_set(self, msg: wire.Iterate | None) -> int:
        """Pre-copy: the page server for the next image set, once the last one is complete.

        Sets ``pre-1``..``pre-N`` are pre-dumps, each the child of the one before; the final
        set is the migration directory itself (its ``parent`` is ``pre-N``). A lazy final set
        gets no page server: its memory stays at the source until the restore asks.
        ``msg`` None: the Plan's first set.
        """
        assert self.workdir is not None
        if self.page_server is not None:  # the last pre-dump's pages are all written
            await self._page_server_exit()
            self.page_server = None
            await self._remove_guards()
        if msg is None:
            self.sets = 1
            (self.workdir / set_name(1)).mkdir()
            return await self._start_page_server(self.workdir / set_name(1), None)
        if msg.index != self.sets + 1:
            raise FerrymanError(f"image set {msg.index} announced after set {self.sets}")
        parent = set_name(self.sets)
        if not msg.final:
            self.sets = msg.index
            images = self.workdir / set_name(msg.index)
            images.mkdir()
            return await self._start_page_server(images, f"../{parent}")
        if msg.lazy:
            if (why := await self._lazy_blocker()) is not None:
                raise CriuFeatureMissing("lazy pages", why)
            (self.workdir / "parent").symlink_to(parent)
            await self._send_page_maps()
            return 0
        return await self._start_page_server(self.workdir, parent)

    async def _page_server_exit(self) -> None:
        """The page server's clean exit: every page of its image set is written. PeerLost as
        soon as the source closes the connection instead: nobody will dump into it then, and
        the migration must not stay (a root criu process, its images) until the timeout."""
        assert self.page_server is not None
        exited = asyncio.ensure_future(self.page_server.wait(self.cfg.timeouts.page_server_exit))
        gone = asyncio.ensure_future(self.ch.wait_peer_closed())
        try:
            await asyncio.wait({exited, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (exited, gone) if not exited.done() else (gone,):
                task.cancel()
            await asyncio.gather(exited, gone, return_exceptions=True)
        if exited.cancelled():
            raise PeerLost(self.ch.peer, f"{self.ch.peer} closed the connection while its "
                           "page server was waiting for pages")
        exited.result()

    async def _send_page_maps(self) -> None:
        """Before a lazy final set: the page maps of every set, back to the source.

        The source's lazy dump reads them (with empty page files: it never reads a page) to
        mark what the destination already has; without them it would serve every page again.
        Sent as ``pre-K.NAME``.
        """
        assert self.workdir is not None
        for k in range(1, self.sets + 1):
            images = self.workdir / set_name(k)
            for p in sorted(images.glob("pagemap-*.img")):
                for m in file_messages(p, f"{images.name}.{p.name}"):
                    await self.ch.send(m)
            for p in sorted(images.glob("pages-*.img")):
                await self.ch.send(wire.FileEnd(name=f"{images.name}.{p.name}", size=0,
                                                sha256=EMPTY_SHA256))

    async def _answer_iterate(self, msg: wire.Iterate) -> None:
        try:
            port = await self._open_set(msg)
            rate = 0
            if msg.index == 2 and self.workdir is not None:  # set 1 is complete now
                rate = await asyncio.to_thread(read_rate, self.workdir / set_name(1))
        except (FerrymanError, OSError) as exc:
            text = getattr(exc, "message", str(exc))
            with contextlib.suppress(FerrymanError):
                await self.ch.send(wire.Error(code="page-server", message=text[:4000]))
            raise
        await self.ch.send(wire.Ready(page_server_port=port, restore_bytes_per_s=rate))

    async def _receive_and_restore(self) -> None:
        t = self.cfg.timeouts
        assert self.workdir is not None
        receiver = Receiver(self.workdir)
        self.tracker.advance(D.RECEIVING)
        failure: TransferError | None = None
        try:
            while True:
                msg = await self.ch.expect((wire.FileChunk, wire.FileEnd, wire.Restore,
                                            wire.Abort, wire.Iterate),
                                           t.iteration if self.sets else t.transfer)
                if isinstance(msg, wire.Iterate):
                    await self._answer_iterate(msg)
                elif isinstance(msg, wire.FileChunk | wire.FileEnd):
                    receiver.take(msg)
                    if isinstance(msg, wire.FileEnd) and msg.name == LAZY_START_AFTER:
                        self._start_lazy_early()
                elif isinstance(msg, wire.Abort):
                    await self._abort(msg.reason)
                    return
                else:
                    receiver.check_complete(msg.file_count)
                    restore_msg = msg
                    break
        except TransferError as exc:
            failure = exc
        finally:  # however the session ends: a file being written keeps its fd otherwise
            receiver.close()
        if failure is not None:  # the source may still be sending: it learns why all the same
            await self._send_failed(failure.code, str(failure), "")
            return
        self.tracker.advance(D.RESTORING)
        lazy = self.ch.conn.lazy
        try:
            if self.page_server is not None:
                await self._page_server_exit()
            if lazy:
                self.lazy_pages = await self._lazy_daemon(restore_msg.page_server_port)
            if self.moving is not None:  # the sockets to restore need the address
                addresses.add(self.moving)
                self.address_added = True
            tcp = self.plan is not None and self.plan.tcp_established
            if self.box is None and restore_msg.fifo_devices:
                await asyncio.to_thread(keep_shared_fifo_data, self.workdir,
                                        restore_msg.kernel, restore_msg.fifo_devices)
            if isinstance(self.box, PodmanDestination) and tcp:
                await self.box.before_restore(self.workdir)  # connections behind its DNAT
            if self.box is not None:
                pid = await self.box.restore(self.workdir, lazy=lazy, tcp_established=tcp)
            else:
                pid = await self.criu.restore(self.workdir, leave_stopped=True, lazy=lazy,
                                              tcp_established=tcp)
            if isinstance(self.box, PodmanDestination) and self.moving is not None:
                self.box.nat_arrives(self.moving.ip)
            if self.moving is not None:  # in a thread: closing the raw socket waits for an
                # RCU grace period (tens of ms) that the frozen window need not include
                announcing = asyncio.ensure_future(asyncio.to_thread(addresses.announce,
                                                                     self.moving))
                announcing.add_done_callback(_announced)
        except (CriuError, RuncError, OSError) as exc:
            log_path = getattr(exc, "log_path", None)
            log_tail = tail(Path(log_path)) if log_path else ""
            await self._send_failed("restore", getattr(exc, "message", str(exc)), log_tail,
                                    log_path)
            return
        self.tree = ProcessTree.of(pid)
        # Read while the commit is on its way: the processes to leave stopped at the resume.
        keep_stopped = asyncio.ensure_future(asyncio.to_thread(stopped_pids, self.workdir))
        # Held from here until the commit, kept so should this agent die meanwhile: a
        # restarted agent lists it (agent/orphans.py settle_records), never loses it.
        write_outcome(self.cfg.state_dir, self.workdir.name, orphan_record(
            self.tree.root, self.moving if self.address_added else None))
        self.held = True
        self.tracker.advance(D.RESTORED)
        stats = read_stats(self.workdir / RESTORE_STATS)
        log.info("restored migration %s as PID %d (stopped)", self.workdir.name, pid)
        if self.cfg.test_pause_after_restore:
            await asyncio.sleep(self.cfg.test_pause_after_restore)
        await self.ch.send(wire.Restored(pid=pid, stats=stats))
        try:
            decision = await self.ch.expect((wire.Commit, wire.Abort), t.commit)
        except (PeerLost, RemoteError) as exc:
            await self._orphan(exc)
            return
        if isinstance(decision, wire.Abort):
            await self._abort(decision.reason)
            return
        self.tree.resume(keep_stopped=await keep_stopped)
        # the workload's clock starts here: its post-resume stall is measured from this line
        log.info("migration %s: PID %d resumed", self.workdir.name, pid)
        write_outcome(self.cfg.state_dir, self.workdir.name, f"COMMITTED {pid}\n")
        self.held = False
        self.tracker.advance(D.COMMITTED)
        resumed_at = time.monotonic()
        await self.ch.send(wire.Committed(pid=pid))
        if self.lazy_pages is not None:
            self.tracker.advance(D.FETCHING_PAGES)
            await self._fetch_remaining_pages(self.lazy_pages, resumed_at)
        self.tracker.advance(D.DONE)
        log.info("migration %s committed: PID %d runs here", self.workdir.name, pid)
        await self._cleanup(keep_logs=True)
        write_outcome(self.cfg.state_dir, self.workdir.name, f"DONE {pid}\n")

    def _start_lazy_early(self) -> None:
        """Post-copy: the images CRIU's lazy-pages daemon reads when it starts are here (the
        source sends them first); start it while the rest arrive, on the Plan's port."""
        plan = self.plan
        if plan is None or not plan.lazy or not plan.page_server_port or \
                self.early_lazy is not None:
            return
        assert self.workdir is not None
        self.early_lazy = asyncio.ensure_future(start_lazy_pages(
            self.criu.binary, self.workdir, address=self.ch.peer_ip,
            port=plan.page_server_port, tls=self.tls))

    async def _lazy_daemon(self, port: int) -> CriuDaemon:
        """The lazy-pages daemon for the source's page server at ``port``: the one started
        early if it runs on that port, else a new one."""
        assert self.workdir is not None
        early, self.early_lazy = self.early_lazy, None
        if early is not None:
            try:
                daemon = await early
            except (CriuError, OSError) as exc:
                log.info("the lazy-pages daemon started early failed (%s): starting again",
                         exc)
            else:
                if daemon.running and self.plan is not None and \
                        self.plan.page_server_port == port:
                    return daemon
                await daemon.kill()
        return await start_lazy_pages(self.criu.binary, self.workdir, address=self.ch.peer_ip,
                                      port=port, tls=self.tls)

    async def _orphan(self, exc: BaseException) -> None:
        """Source lost after RESTORED, before COMMIT: keep the tree stopped for an operator.

        Not a lazily restored one: its memory is on the source, with the page server that
        went with the source; it can never run, whichever copy the source kept."""
        assert self.tree is not None
        assert self.workdir is not None
        if self.ch.conn.lazy:
            log.error("source lost after a post-copy restore, before commit: PID %d cannot "
                      "run without the source's pages; killed (%s)", self.tree.pid, exc)
            self.tracker.advance(D.KILLED)
            await self._cleanup()
            return
        self.tracker.advance(D.ORPHANED)
        if self.box is not None:  # runc keeps the container, stopped, in its slot
            self.box.slot.release(remove=False)
        # The ORPHANED record, with the address, was written at the restore (an operator may
        # have acted on it since); the source copy may run on: it needs the address back.
        if self.address_added and self.moving is not None:
            with contextlib.suppress(FerrymanError):
                addresses.delete(self.moving)
            self.address_added = False
        log.error("source lost after restore, before commit: PID %d kept STOPPED; check the "
                  "source, then 'ferryman orphans resume|kill %s' (%s)",
                  self.tree.pid, self.workdir.name, exc)

    async def _fetch_remaining_pages(self, daemon: CriuDaemon, resumed_at: float) -> None:
        """Post-copy tail: the lazy-pages daemon exits once it has every page.

        The control channel is watched at the same time: losing the source now loses the
        workload (its memory is split between the nodes), so the tree is killed, never left
        hanging on a fault that cannot be served.
        """
        assert self.tree is not None
        done = asyncio.ensure_future(daemon.wait(self.cfg.timeouts.page_tail))
        watch = asyncio.ensure_future(self.ch.receive(self.cfg.timeouts.page_tail))
        try:
            await asyncio.wait({done, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not done.done():
                exc = watch.exception() if not watch.cancelled() else None
                raise PeerLost(self.ch.peer, f"control connection lost during the page tail: "
                               f"{exc or 'unexpected message'}")
            done.result()  # raises CriuError when the daemon failed
        except (FerrymanError, OSError) as exc:
            self.tracker.advance(D.LOST)
            log.error("workload PID %d LOST during the post-copy tail: %s",  # noqa: TRY400
                      self.tree.pid, exc)
            await daemon.kill()
            self.tree.kill()
            with contextlib.suppress(FerrymanError):
                await self.ch.send(wire.Error(code="lost", message=str(exc)[:4000]))
            assert self.workdir is not None
            write_outcome(self.cfg.state_dir, self.workdir.name, f"LOST {self.tree.pid}\n")
            await self._cleanup(keep_logs=True)  # its images cannot serve anything now
            raise
        finally:
            for task in (done, watch):
                task.cancel()
            await asyncio.gather(done, watch, return_exceptions=True)
        copied, _total, faults = lazy_pages_transferred(daemon.log_path)
        waited, longest = lazy_fault_waits(daemon.log_path)
        elapsed = int((time.monotonic() - resumed_at) * 1000)
        log.info("all %d lazy pages arrived in %d ms (%d faults, %.0f ms waited on them, "
                 "%.0f ms the longest)", copied, elapsed, faults, waited, longest)
        await self.ch.send(wire.PagesComplete(pages=copied, bytes=copied * PAGE_SIZE, faults=faults,
                                              elapsed_ms=elapsed, fault_wait_ms=round(waited),
                                              fault_max_ms=round(longest)))

    async def _send_failed(self, code: str, message: str, log_tail: str,
                           log_path: str | None = None) -> None:
        log.warning("migration failed here (%s): %s", code, message)
        kept = await self._cleanup()
        if log_path is not None and Path(log_path) in kept:  # name it where it is now
            message = message.replace(log_path, str(kept[Path(log_path)]))
        self.tracker.advance(D.CLEANED)
        await self.ch.send(wire.Failed(code=code, message=message, log_tail=log_tail[-60000:]))
        # The source answers with Abort (or just goes away). After a bad file it may have
        # sent more files and its Restore before it read the Failed: those are discarded.
        deadline = time.monotonic() + self.cfg.timeouts.commit
        try:
            while not isinstance(await self.ch.expect(
                    (wire.Abort, wire.FileChunk, wire.FileEnd, wire.Restore),
                    max(0.0, deadline - time.monotonic())), wire.Abort):
                pass
            await self.ch.send(wire.Aborted())
        except FerrymanError:
            pass

    async def _abort(self, reason: str) -> None:
        log.warning("source aborted the migration: %s", reason)
        killed = self.tree is not None
        await self._cleanup()
        self.tracker.advance(D.KILLED if killed else D.CLEANED)
        await self.ch.send(wire.Aborted())

    async def _fail(self, exc: BaseException) -> None:
        if self.tracker.phase in (D.DONE, D.REFUSED, D.CLEANED, D.KILLED, D.ORPHANED, D.LOST):
            return
        log.warning("migration failed in %s: %s", self.tracker.phase, exc)
        if self.tracker.phase == D.RESTORED:
            await self._orphan(exc)
            return
        await self._cleanup()
        target = self.tracker.failure_target()
        if target is not None:
            self.tracker.advance(target)

    async def _remove_guards(self) -> None:
        guards, self.guards = self.guards, []
        for guard in guards:
            await asyncio.to_thread(guard.remove)

    async def _cleanup(self, *, keep_logs: bool = False) -> dict[Path, Path]:
        """Stop and remove everything of this migration; returns where each log it kept for
        the operator went (``STATE/failed/ID/``)."""
        if self.page_server is not None:
            await self.page_server.kill()
        await self._remove_guards()
        if self.early_lazy is not None:  # never used: the migration ended before Restore
            early, self.early_lazy = self.early_lazy, None
            with contextlib.suppress(CriuError, OSError):
                await (await early).kill()
        if self.lazy_pages is not None:
            await self.lazy_pages.kill()
        if self.address_added and self.moving is not None and \
                self.tracker.phase not in (D.COMMITTED, D.DONE, D.FETCHING_PAGES):
            with contextlib.suppress(FerrymanError):
                addresses.delete(self.moving)  # the source takes its address back
            self.address_added = False
        if self.tree is None and self.workdir is not None:
            # A criu restore that died without answering may have forked tasks that live on
            # (still criu, or half restored) with no PID given to us: they hold the images.
            for pid in procfs.holders(self.workdir):
                log.warning("killing PID %d, left in %s by a failed restore", pid,
                            self.workdir)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.tree is not None and self.tracker.phase not in (D.COMMITTED, D.DONE):
            self.tree.kill()
            if self.held and self.workdir is not None:
                write_outcome(self.cfg.state_dir, self.workdir.name,
                              f"KILLED {self.tree.pid}\n")
                self.held = False
        if self.box is not None:
            await self.box.cleanup(delete=self.tracker.phase not in (D.COMMITTED, D.DONE))
        kept: dict[Path, Path] = {}
        if self.workdir is not None and self.workdir.exists():
            if keep_logs:
                remove_images(self.workdir)
            else:
                # Failed migrations leave no images, only the agent's logs for the operator.
                kept = failedlogs.keep(self.workdir, image_sets(self.workdir)[1:],
                                       self.cfg.state_dir / "failed")
                shutil.rmtree(self.workdir, ignore_errors=True)
        return kept


def _announced(task: asyncio.Future[None]) -> None:
    """The gratuitous ARP is a courtesy to clients' neighbour caches: a failure is logged."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not announce the moved address: %s", task.exception())
