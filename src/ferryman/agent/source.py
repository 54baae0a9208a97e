"""The SOURCE role: freeze, dump into the destination, hand over, commit or roll back.

The workload stays frozen at CRIU's ``post-dump`` notification while the destination restores
it (stopped). Only when the destination reports RESTORED do we answer the notification with
success (CRIU then destroys the frozen source copy): that is the POINT_OF_NO_RETURN. Any
failure before it answers failure, and CRIU resumes the workload where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid

from ferryman import testhooks, wire
from ferryman.agent import fifos, lockguard, podman
from ferryman.agent.channel import Channel
from ferryman.agent.commit import point_of_no_return
from ferryman.agent.container import (
    SourceContainer,
    source_final_sync,
    source_open,
    source_presync,
)
from ferryman.agent.files import file_messages, image_files
from ferryman.agent.gate import check_before_plan, plan_migration
from ferryman.agent.postcopy import announce_restore, run_postcopy
from ferryman.agent.precopy import run_iterations
from ferryman.agent.role import ProgressFn, SourceOptions
from ferryman.agent.session import abort, greet
from ferryman.agent.source_freeze import CgroupFreeze
from ferryman.agent.source_network import Handover
from ferryman.agent.source_report import collect_dump_stats, finish_report
from ferryman.agent.steps import timed
from ferryman.criu import unix_images
from ferryman.criu.client import Criu, PageServerAddress, TlsFiles
from ferryman.criu.pacing import bytes_per_s, criu_env
from ferryman.criu.page_server import free_port
from ferryman.errors import (
    FerrymanError,
    MigrationRolledBack,
    PeerLost,
    RemoteError,
)
from ferryman.host import (
    addresses,
    netlock,
    sourcecopy,
    unix_names,
)
from ferryman.host.fifos import boot_id
from ferryman.host.wptrack import WriteTracker
from ferryman.migration.phases import SOURCE_TABLE, PhaseTracker, SourcePhase
from ferryman.migration.plan import Plan
from ferryman.migration.report import MigrationReport, Result
from ferryman.targets.process import ProcessTree
from ferryman.targets.runc_checkpoint import Dumper

# SourceOptions and ProgressFn live in agent/role.py; importable from here too.
__all__ = ["ProgressFn", "SourceMigration", "SourceOptions"]

log = logging.getLogger(__name__)
S = SourcePhase
class SourceMigration:
    def __init__(self, opts: SourceOptions) -> None:
        self.o = opts
        self.criu = Criu(opts.criu_bin, env=criu_env(opts.max_bandwidth_mbit, os.environ))
        self.t0 = time.monotonic()
        self.tracker = PhaseTracker(SOURCE_TABLE, S.HELLO, time.monotonic,
                                    on_enter=testhooks.pause_hook())
        self.id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
        self.workdir = opts.state_dir / "migrations" / self.id
        self.report = MigrationReport(migration_id=self.id, mode=opts.mode,
                                      source_node=opts.creds.name,
                                      destination=f"{opts.host}:{opts.port}",
                                      source_pid=opts.pid)
        if opts.max_bandwidth_mbit is not None:
            self.report.max_bandwidth_bytes_per_s = bytes_per_s(opts.max_bandwidth_mbit)
        self.ch: Channel | None = None
        self.tree: ProcessTree | None = None
        self.restored: wire.Restored | None = None
        self.freeze_at: float | None = None
        self.ps_port = 0
        self.address_moved = False
        self.commit_error: PeerLost | None = None
        self.cgroup = CgroupFreeze(self.report, opts.progress)  # the one we freeze, if any
        self.stopped_source: list[int] = []
        self.serving = asyncio.Event()
        self.shipped = (0, 0)
        self.lazy = False  # the final dump keeps the memory here, served on demand
        self.parent: str | None = None  # the last pre-dump's set, parent of the final dump
        self.dumper: Dumper = self.criu  # runc's checkpoint for a container
        self.write_tracker: WriteTracker | None = None  # pre-copy without soft-dirty
        self.box: SourceContainer | None = None
        self.plan: Plan | None = None  # decided once after Hello (migration/plan.py)
        self.sync_port = 0
        self.committed: asyncio.Future[wire.Committed] | None = None
        # CRIU's network lock and the segments that reach us frozen (--move-address)
        self.net = Handover(self.workdir, opts.move_address, opts.tcp_established, self.report)
        self.fifo_devices: dict[str, int] = {}  # FIFOs with data the frozen tree holds
        self.parked: list[unix_names.ParkedName] = []  # its unix socket names, kept

    @property
    def pid(self) -> int:
        """The workload's root PID on this node, as resolved once (``self.tree``)."""
        assert self.tree is not None, "the workload is identified first"
        return self.tree.pid

    def phase(self, phase: SourcePhase, detail: str = "") -> None:
        self.tracker.advance(phase)
        self.o.progress(str(phase), detail)

    async def run(self) -> MigrationReport:
        try:
            await self._run()
        except BaseException:
            self.cgroup.thaw()
            if self.tracker.phase in (S.HELLO, S.PLANNED, S.PRESYNC):
                self.tracker.advance(S.FAILED)  # nothing was frozen; the error says why
            raise
        finally:
            self.cgroup.thaw()
            unix_names.discard(self.parked)  # a rollback gave them back already
            sourcecopy.clear(self.workdir)  # settled here: nothing for the guard to do
            self.net.drop_inflight()
            if self.write_tracker is not None:  # the kernel unprotects the workload's pages
                self.write_tracker.close()
            await self.net.settle()
            finish_report(self.report, self.workdir, self.t0, self.freeze_at,
                          self.tracker.durations())
            if self.ch is not None:
                await self.ch.close()
        return self.report

    async def _run(self) -> None:
        o = self.o
        if o.container is not None:  # NoSuchContainer, RuncMissing before anything else
            self.box = await source_open(self, o.container)
        elif o.podman is not None:  # Podman's container, dumped by runc (agent/podman.py)
            self.box = await podman.source_open(self, o.podman)
        # The workload's identity, resolved once (NoSuchProcess before anything else): the
        # PID asked for, or the container's init; everything after uses self.pid.
        self.tree = ProcessTree.of(self.box.pid if self.box is not None else o.pid)
        self.report.source_pid = self.tree.pid
        self.report.rss_bytes = self.tree.rss_bytes()
        self.workdir.mkdir(parents=True, mode=0o700)
        lockguard.start(os.getpid(), self.workdir)  # CRIU's network lock, should we die
        self.o.progress("HELLO", f"connecting to {o.host}:{o.port}")
        greeted = await greet(self.criu, o.creds, o.state_dir, host=o.host, port=o.port,
                              timeout=o.timeouts.hello,  # criu describes us meanwhile
                              steps=self.report.steps)
        self.ch = ch = greeted.ch
        hello, theirs = greeted.ours, greeted.theirs
        self.report.destination_node = theirs.node
        pre = None
        if self.box is None:  # a container is checked by runc and the destination's plan
            pre = await check_before_plan(self, hello, theirs)  # no freeze before the verdict
        self.plan = plan = await plan_migration(self, hello, theirs, pre)  # once; frozen
        self.report.mode = plan.mode
        lazy = plan.lazy
        self.report.dirty_tracker = plan.tracker
        if lazy:  # known now, the destination can start its lazy-pages daemon early
            self.ps_port = free_port(ch.local_ip)
        await ch.send(wire.Plan(migration_id=self.id, mode=plan.mode, pid=self.pid, lazy=lazy,
                                tcp_established=o.tcp_established,
                                move_address=str(o.move_address or ""),
                                target=self.box.planned().to_json() if self.box else "",
                                page_server_port=self.ps_port))
        with timed(self.report.steps, "plan_ready"):  # the destination's CPU check, page server
            answer = await ch.expect((wire.Ready, wire.Refused), o.timeouts.plan)
        if isinstance(answer, wire.Refused):
            raise RemoteError(theirs.node, answer.code, f"refused: {answer.message}")
        self.sync_port = answer.sync_port
        port = answer.page_server_port
        if plan.pre_copies:
            self.phase(S.PLANNED, f"pre-copy into page servers on {theirs.node}")
            if self.box is not None:  # the container's files first, while it runs
                await source_presync(self, self.box, self.sync_port)
            final = await run_iterations(self, port, hybrid=plan.mode.lazy,
                                         postcopy_allowed=plan.postcopy_allowed)
            lazy, port, self.parent = final.lazy, final.port, final.parent
        else:
            self.phase(S.PLANNED, "post-copy: pages will follow on demand" if lazy
                        else f"page server on port {port}")
        self.lazy = lazy
        if self.box is not None:  # the container's files while it runs (once: pre-copy's
            await source_presync(self, self.box, self.sync_port)  # pre-sync counts)
        if lazy:
            await run_postcopy(self)
        else:
            await self._cold(port)
        if self.box is not None and self.report.result == Result.COMMITTED:
            await self.box.after_commit()  # e.g. Podman's record of it goes

    async def _cold(self, ps_port: int) -> None:
        o = self.o
        assert self.ch is not None
        c = o.creds
        self.phase(S.FREEZING, f"dumping PID {self.pid}")
        self.freeze_at = time.monotonic()
        cgroup = self.find_freezer()
        try:
            await self.dumper.dump(self.pid, self.workdir,
                                 page_server=PageServerAddress(o.host, ps_port),
                                 tls=TlsFiles(cacert=c.ca, cert=c.cert, key=c.key),
                                 on_notify=self.on_notify, freeze_cgroup=cgroup,
                                 tcp_established=o.tcp_established,
                                 track_mem=self.parent is not None, parent=self.parent,
                                 track_mem_uffd=self.write_tracker is not None)
            self.cgroup.thaw()  # empty now, or holding the restored tree on a shared host
        except (FerrymanError, OSError) as exc:
            if self.tracker.phase == S.COMMITTED:
                log.warning("criu reported an error after the point of no return: %s", exc)
            else:
                await self.roll_back(exc)
                return
        self.collect_dump_stats()
        await self._commit()

    def queue_stop_source(self) -> None:
        """Queue a SIGSTOP to every source task (they are frozen by CRIU; it waits there)."""
        assert self.tree is not None
        self.stopped_source = self.tree.pids()
        sourcecopy.record_stopped(self.workdir, self.stopped_source)  # for the guard
        for pid in self.stopped_source:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def criu_holds_tree(self) -> bool:
        return sourcecopy.traced(self.pid)

    def mark_commit(self) -> None:
        sourcecopy.mark_commit(self.workdir)

    def find_freezer(self) -> str | None:
        """The workload's own cgroup, for CRIU to reuse frozen (agent/source_freeze.py)."""
        assert self.tree is not None
        return self.cgroup.find_freezer(self.tree)

    async def on_notify(self, script: str, _pid: int) -> bool:
        if script == "pre-dump":
            # CRIU runs this right before it seizes (freezes) the tree: downtime starts here,
            # not when we started criu; with a cgroup, we freeze it now.
            self.net.hold_inflight()
            if (frozen_at := self.cgroup.freeze_now()) is not None:
                self.freeze_at = frozen_at
            elif self.cgroup.freezer is None:
                self.freeze_at = time.monotonic()
            return True
        if script == "status-ready" and self.lazy:
            return await announce_restore(self)
        if script != "post-dump":
            return True
        assert self.ch is not None
        self.phase(S.DUMPED)
        if self.o.move_address is not None:  # frozen and network-locked: hand it over
            addresses.delete(self.o.move_address)
            self.address_moved = True
            sourcecopy.record_address(self.workdir, self.o.move_address)  # for the guard
        self.phase(S.TRANSFERRING)
        files = image_files(self.workdir)
        total = 0
        for path in files:
            for msg in file_messages(path):
                if isinstance(msg, wire.FileChunk):
                    total += len(msg.data)
                await self.ch.send(msg)
        self.report.image_bytes = total
        self.o.progress("TRANSFERRING", f"{len(files)} image files, {total >> 10} KiB")
        if self.box is not None:  # frozen: the container's files, final state
            await source_final_sync(self, self.box, self.sync_port)
        self.shipped = (len(files), total)
        self._keep_what_the_restore_shares()
        if self.lazy:
            return True  # CRIU now opens its page server and says status-ready
        await self.ch.send(self.restore_message())
        self.find_network_lock()
        await self.await_restored()
        # Point of no return (migration/commit.py). The commit goes out before CRIU is told
        # to destroy the source copy, so the destination resumes while CRIU cleans up here.
        await point_of_no_return(self)
        return True

    def _keep_what_the_restore_shares(self) -> None:
        """Frozen, before the destination restores: what its restore would take from this
        frozen tree where both nodes see one kernel or one filesystem: the data of its FIFOs
        (agent/fifos.py) and the names of its unix sockets (host/unix_names.py)."""
        if self.box is not None or self.tree is None:
            return
        self.fifo_devices = fifos.held_with_data(self.workdir, self.tree.pids())
        self.parked = unix_names.park(unix_images.bound_paths(self.workdir), self.id)

    def restore_message(self, page_server_port: int = 0) -> wire.Restore:
        """Restore now: the images shipped, and the FIFOs whose data the destination leaves
        where it is should it be this kernel (agent/fifos.py)."""
        count, total = self.shipped
        return wire.Restore(file_count=count, total_bytes=total,
                            page_server_port=page_server_port,
                            kernel=boot_id() if self.fifo_devices else "",
                            fifo_devices=self.fifo_devices)

    async def await_restored(self) -> bool:
        assert self.ch is not None
        self.phase(S.AWAIT_RESTORE)
        answer = await self.ch.expect((wire.Restored, wire.Failed), self.o.timeouts.restore)
        if isinstance(answer, wire.Failed):
            self.report.destination_log_tail = answer.log_tail
            what = "restore" if answer.code == "restore" else f"image transfer ({answer.code})"
            raise RemoteError(self.report.destination_node or self.ch.peer, answer.code,
                              f"{what} failed: {answer.message}")
        self.restored = answer
        self.report.destination_pid = answer.pid
        self.report.criu["restore"] = dict(answer.stats)
        self.o.progress("RESTORED", f"as PID {answer.pid} on the destination (stopped)")
        return True

    async def _commit(self) -> None:
        assert self.ch is not None
        assert self.tree is not None
        if self.tree.alive():  # CRIU reported success but left the tree: never run twice
            self.tree.kill()
        where = ("the workload is on the destination, running or kept stopped: see "
                 "'ferryman orphans' there")
        if self.commit_error is not None:
            raise PeerLost(self.ch.peer, f"the commit may not have reached "
                           f"{self.report.destination_node}: {self.commit_error.message}",
                           hint=where)
        try:
            done = await (self.committed or self.await_committed())
        except PeerLost as exc:  # it may have resumed the workload, or never had the commit
            raise PeerLost(self.ch.peer, f"{self.report.destination_node} did not confirm the "
                           f"commit: {exc.message}", hint=where) from exc
        self.report.destination_pid = done.pid
        self.report.result = Result.COMMITTED
        self.phase(S.DONE, f"running on {self.report.destination_node} as PID {done.pid}")

    async def await_committed(self) -> wire.Committed:
        """The destination resumed the workload: the downtime ends here."""
        assert self.ch is not None
        done = await self.ch.expect((wire.Committed,), self.o.timeouts.commit)
        if self.freeze_at is not None:
            self.report.downtime_ms = (time.monotonic() - self.freeze_at) * 1000
        return done

    def find_network_lock(self) -> None:
        """While the destination restores: look up CRIU's lock tables here."""
        self.net.find_network_lock()

    async def release_network_lock(self) -> None:
        await self.net.release_network_lock()

    def forward_inflight(self) -> None:
        self.net.forward_inflight()

    async def roll_back(self, exc: BaseException) -> None:
        assert self.tree is not None
        self.phase(S.RESUMING, str(exc))
        unix_names.give_back(self.parked)
        self.parked = []
        if self.address_moved and self.o.move_address is not None:
            with contextlib.suppress(FerrymanError):
                addresses.add(self.o.move_address)  # the service address comes back here
            self.address_moved = False
        self.cgroup.thaw()
        self.net.drop_inflight()  # the client resends to the source what it dropped
        # A CRIU that failed unlocks the network itself; one we killed (post-copy) cannot.
        await asyncio.to_thread(netlock.release, self.workdir)
        for pid in self.stopped_source:  # a post-copy commit that never reached the peer
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.ch is not None and self.ch.conn.state not in wire.FINAL_STATES:
            await abort(self.ch, str(exc))
        self.collect_dump_stats()
        if not self.tree.alive():
            self.phase(S.LOST)
            self.report.result = Result.LOST
            raise FerrymanError(f"workload PID {self.pid} did not survive the failed "
                                f"migration: {exc}") from exc
        self.phase(S.ROLLED_BACK)
        self.report.result = Result.ROLLED_BACK
        hint = getattr(exc, "hint", None)
        raise MigrationRolledBack(getattr(exc, "message", str(exc)), hint=hint) from exc

    def collect_dump_stats(self, *, lazy: bool = False) -> None:
        collect_dump_stats(self.report, self.workdir, lazy=lazy)
