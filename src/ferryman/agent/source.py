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
from ferryman.agent import fifos, lockguard, podman, statelock
from ferryman.agent.channel import Channel
from ferryman.agent.compression import Ahead, choose_compression, describe, measure, measures_ahead
from ferryman.agent.container import source_open
from ferryman.agent.files import file_messages, image_files
from ferryman.agent.gate import Preflight, check_before_plan, decide_plan, plan_migration
from ferryman.agent.role import ProgressFn, SourceOptions
from ferryman.agent.session import abort, greet
from ferryman.agent.source_drive import SourceDrive
from ferryman.agent.source_freeze import CgroupFreeze
from ferryman.agent.source_network import Handover
from ferryman.agent.source_report import collect_dump_stats, finish_report
from ferryman.agent.steps import timed
from ferryman.criu import unix_images
from ferryman.criu.client import Criu
from ferryman.criu.pacing import bytes_per_s, criu_env
from ferryman.criu.page_server import free_port
from ferryman.errors import (
    FerrymanError,
    RemoteError,
)
from ferryman.host import (
    addresses,
    netlock,
    portguard,
    procfs,
    sourcecopy,
    unix_names,
)
from ferryman.host.fifos import boot_id
from ferryman.host.wptrack import WriteTracker
from ferryman.migration.iterations import Convergence
from ferryman.migration.phases import SOURCE_TABLE, PhaseTracker, SourcePhase
from ferryman.migration.plan import Plan
from ferryman.migration.report import MigrationReport, Result
from ferryman.migration.source_driver import SourceDriver
from ferryman.migration.verdict import Verdict
from ferryman.targets.process import ProcessTree
from ferryman.targets.runc_checkpoint import Dumper
from ferryman.targets.workload import ProcessWorkload, Workload

# SourceOptions and ProgressFn live in agent/role.py; importable from here too.
__all__ = ["ProgressFn", "SourceMigration", "SourceOptions"]

log = logging.getLogger(__name__)
S = SourcePhase
class SourceMigration:
    def __init__(self, opts: SourceOptions) -> None:
        self.opts = opts
        self.criu = Criu(opts.criu_bin, env=criu_env(opts.max_bandwidth_mbit, os.environ))
        self.t0 = time.monotonic()
        self.tracker = PhaseTracker(SOURCE_TABLE, S.HELLO, time.monotonic,
                                    on_enter=testhooks.pause_hook())
        self.id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
        self.workdir = opts.state_dir / "migrations" / self.id
        self.network_locked = True  # the final dump's choice (lock_network)
        self.report = MigrationReport(migration_id=self.id, mode=opts.mode,
                                      source_node=opts.creds.name,
                                      destination=f"{opts.host}:{opts.port}",
                                      source_pid=opts.pid)
        if opts.max_bandwidth_mbit is not None:
            self.report.max_bandwidth_bytes_per_s = bytes_per_s(opts.max_bandwidth_mbit)
        self.ch: Channel | None = None
        self.tree: ProcessTree | None = None
        self.freeze_at: float | None = None
        self.ps_port = 0
        self.pages_from = ""
        self.address_moved = False
        self.cgroup = CgroupFreeze(self.report, opts.progress)  # the one we freeze, if any
        self.stopped_source: list[int] = []
        self.shipped = (0, 0)
        self.dumper: Dumper = self.criu  # runc's checkpoint for a container
        self.write_tracker: WriteTracker | None = None  # pre-copy without soft-dirty
        self.workload: Workload | None = None  # opened first (targets/workload.py)
        self.plan: Plan | None = None  # decided once after Hello (migration/plan.py)
        self.sync_port = 0
        self.compressed = False  # --compress: the pages go through the page relay
        self.lazy_relay = False  # a lazy dump's pages go through the page relay
        self.criu_frames = False  # ... in frames criu compresses itself (relay_frames)
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
        self.opts.progress(str(phase), detail)

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
            portguard.remove_recorded(self.workdir)  # the lazy page server's, if any
            if self.write_tracker is not None:  # the kernel unprotects the workload's pages
                self.write_tracker.close()
            await self.net.settle()
            finish_report(self.report, self.workdir, self.t0, self.freeze_at,
                          self.tracker.durations())
            if self.ch is not None:
                await self.ch.close()
        return self.report

    async def _criu_relays_lazy(self, hello: wire.Hello) -> bool:
        """This node's CRIU serves lazy pages on a socket it is handed (our patch, probed with
        ``criu check``; asked during the pre-flight, so cached by now), and no test hid it."""
        return await self._criu_has(hello, "lazy_relay")

    async def _criu_has(self, hello: wire.Hello, probe: str) -> bool:
        """This node's CRIU passed the ``criu check --feature`` probe ``probe``
        (criu/probe.py), and no test hid it (FERRYMAN_TEST_HIDE_FEATURES)."""
        if not hello.features.get(probe, True):
            return False
        return (await self.criu.probes()).get(probe, False)

    async def _run(self) -> None:
        opts = self.opts
        # The workload and its identity, resolved once (NoSuchContainer, RuncMissing,
        # NoSuchProcess before anything else): the tree of the PID asked for, or the
        # container's init; everything after asks the workload, or uses self.pid.
        self.workload = await self._open_workload()
        self.tree = self.workload.tree
        self.report.source_pid = self.tree.pid
        self.report.rss_bytes = self.tree.rss_bytes()
        self.workdir.mkdir(parents=True, mode=0o700)
        self._busy = statelock.hold_migration(self.workdir)  # an agent starting: not its
        lockguard.start(os.getpid(), self.workdir)  # CRIU's network lock, should we die
        self.opts.progress("HELLO", f"connecting to {opts.host}:{opts.port}")
        greeted = await greet(self.criu, opts.creds, opts.state_dir, host=opts.host, port=opts.port,
                              timeout=opts.timeouts.hello,  # criu describes us meanwhile
                              steps=self.report.steps)
        self.ch = ch = greeted.ch
        hello, theirs = greeted.ours, greeted.theirs
        self.report.destination_node = theirs.node
        pre = None
        ahead = Ahead()  # --compress auto's measurements, made while the dry run dumps
        measuring = measures_ahead(self, opts.mode, opts.compress)
        early: list[tuple[Plan, wire.Ready]] = []  # the Plan sent while the dry run dumped

        async def alongside(rows: Verdict) -> None:
            """While the dry run dumps: the measurements, then, for a mode given, the Plan
            and the destination's Ready (its page server, CPU check), on the verdict of the
            other rows: the dry run's can only refuse, and then the Plan is aborted."""
            if measuring:
                await measure(self, ahead)
            if opts.mode.decided:
                try:
                    planned = decide_plan(self, hello, theirs, Preflight(rows))
                except FerrymanError:
                    return  # plan_migration says why, once the dry run is over
                early.append((planned, await self._plan_ready(planned, hello, ahead)))

        if self.workload.process_preflight:  # a container: by runc and the destination
            try:
                pre = await check_before_plan(self, hello, theirs, alongside)  # no freeze
            except BaseException as exc:  # before the verdict; a Plan sent is aborted
                if early and ch.conn.state is wire.State.READY:
                    await abort(ch, f"pre-flight failed: {exc}")
                raise
        self.plan = plan = await plan_migration(self, hello, theirs, pre)  # once; frozen
        if early and early[0][0] != plan:  # a mode given is not the verdict's to change
            await abort(ch, "pre-flight changed the plan")
            raise FerrymanError(f"the pre-flight planned {early[0][0].mode}, then {plan.mode}",
                                hint="a bug in ferryman: please report it")
        answer = early[0][1] if early else await self._plan_ready(plan, hello, ahead)
        self.sync_port = answer.sync_port
        self.pages_from = answer.pages_from
        driver = SourceDriver(
            lazy=plan.lazy, streamed=plan.streamed, container=self.workload.syncs_frozen,
            presync=self.workload.presyncs,
            move_address=opts.move_address is not None, hybrid=plan.mode.lazy,
            convergence=Convergence(
                opts.precopy, postcopy_allowed=plan.postcopy_allowed,
                rss_bytes=self.report.rss_bytes,
                dry_run_freeze_ms=self.report.dry_run_freeze_ms,
                cap_bytes_per_s=self.report.max_bandwidth_bytes_per_s,
                # runc and Podman containers alike get no dry run: their objects' cost
                # comes from the pre-dumps' fit (precopy_plan.container_objects_ms)
                container=not self.workload.process_preflight) if plan.pre_copies else None)
        try:
            await SourceDrive(self, driver, self.workload).run(answer.page_server_port)
        finally:  # a loss is raised (WorkloadLost)
            if self.report.result == Result.LOST:
                await self.workload.after_loss()
        if self.report.result == Result.COMMITTED:
            await self.workload.after_commit()  # e.g. Podman's record of it goes

    async def _plan_ready(self, plan: Plan, hello: wire.Hello, ahead: Ahead) -> wire.Ready:
        """Send the Plan (with what the relay and ``--compress`` choose) and wait for the
        destination's Ready; a Refused is raised (RemoteError)."""
        opts = self.opts
        ch = self.ch
        assert ch is not None
        assert self.workload is not None
        self.report.mode = plan.mode
        lazy = plan.lazy_dump
        self.report.dirty_tracker = plan.tracker
        self.report.streamed = plan.streamed
        # A process tree's lazy pages (post-copy, hybrid's lazy final step) through the page
        # relay, if this node's CRIU can serve them there (runc dumps a container into
        # CRIU's own page connection)
        self.lazy_relay = (plan.mode.lazy or plan.streamed) and not opts.in_container and \
            await self._criu_relays_lazy(hello)
        choice = await choose_compression(self, plan, opts.compress, ahead)  # --compress
        if self.lazy_relay and not choice.on and not plan.pre_copies:
            # Uncompressed post-copy pages take CRIU's own TLS page path, which gathers its
            # records (tls-gather-records.patch): 1 GiB of random lazy pages, every page on
            # the destination in 1.2 s by hand against 1.9 s through the relay's asyncio TLS
            # (bench/results/2026-12-05-195155.md). Hybrid's lazy step keeps the relay.
            self.lazy_relay = False
        if lazy and not self.lazy_relay:  # the destination can start its daemon early
            self.ps_port = free_port(ch.local_ip)
        self.report.compression, self.compressed = describe(choice), choice.on
        # A compressed lazy dump through the relay compresses its own answers into the
        # relay's frames where this node's CRIU can (relay-frames-lazy.patch): the relay
        # then passes them on instead of reading every page out of the socket pair
        self.criu_frames = self.lazy_relay and self.compressed and \
            await self._criu_has(hello, "relay_frames")
        self.report.compression["relay"] = False  # the dump that goes through it says so
        await ch.send(wire.Plan(migration_id=self.id, mode=plan.mode, pid=self.pid,
                                lazy=plan.lazy, streamed=plan.streamed,
                                tcp_established=opts.tcp_established,
                                move_address=str(opts.move_address or ""),
                                target=self.workload.planned_target(),
                                page_server_port=self.ps_port, compress=self.compressed,
                                lazy_relay=self.lazy_relay, rss_bytes=self.report.rss_bytes))
        with timed(self.report.steps, "plan_ready"):  # the destination's CPU check, page server
            answer = await ch.expect((wire.Ready, wire.Refused), opts.timeouts.plan)
        if isinstance(answer, wire.Refused):
            raise RemoteError(self.report.destination_node or ch.peer, answer.code,
                              f"refused: {answer.message}")
        if answer.prefault_bytes or answer.prefault_ms:
            self.report.steps["prefault"] = answer.prefault_ms
            self.report.prefault_bytes = answer.prefault_bytes
            node = self.report.destination_node
            if answer.prefault_bytes:
                said = (f"{node} made {answer.prefault_bytes >> 20} MiB resident for the restore "
                        f"in {answer.prefault_ms} ms (its free memory goes back to its "
                        "hypervisor)")
            else:
                said = (f"{node} found its free memory resident ({answer.prefault_ms} ms): "
                        "nothing held for the restore")
            opts.progress("PLANNED", said)
        return answer

    async def _open_workload(self) -> Workload:
        """What was asked to move: a runc container, a Podman one (dumped by runc,
        agent/podman.py), or a process tree."""
        opts = self.opts
        if opts.container is not None:
            return await source_open(self, opts.container)
        if opts.podman is not None:
            return await podman.source_open(self, opts.podman)
        return ProcessWorkload(ProcessTree.of(opts.pid))

    def queue_stop_source(self) -> None:
        """Queue a SIGSTOP to every source task (they are frozen by CRIU; it waits there)."""
        assert self.tree is not None
        self.stopped_source = self.tree.pids()
        sourcecopy.record_stopped(self.workdir, self.stopped_source)  # for the guard
        for pid in self.stopped_source:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def guard_left_stopped(self) -> None:
        """The tree, stopped or frozen until the commit, and the cgroup we froze, for the
        guard: a runc container's CRIU outlives a killed controller (it is runc's child)."""
        assert self.tree is not None
        sourcecopy.record_stopped(self.workdir, self.tree.pids())
        if self.workload is not None and (argv := self.workload.forget_argv()):
            sourcecopy.record_forget(self.workdir, argv)
        if self.cgroup.freezer is not None:
            sourcecopy.record_frozen(self.workdir, self.cgroup.freezer)

    def criu_holds_tree(self) -> bool:
        return sourcecopy.traced(self.pid)

    def mark_commit(self) -> None:
        sourcecopy.mark_commit(self.workdir)

    def find_freezer(self) -> str | None:
        """The workload's own cgroup, for CRIU to reuse frozen (agent/source_freeze.py)."""
        assert self.tree is not None
        return self.cgroup.find_freezer(self.tree)

    def freeze_window(self) -> None:
        """CRIU's pre-dump: it seizes (freezes) the tree right after, so the downtime starts
        here, not when we started criu; with a cgroup of its own, we freeze it now."""
        self.net.hold_inflight()
        if (frozen_at := self.cgroup.freeze_now()) is not None:
            self.freeze_at = frozen_at
            self.guard_left_stopped()  # CRIU puts the cgroup back frozen, even if we die
        elif self.cgroup.freezer is None:
            self.freeze_at = time.monotonic()

    def thaw(self) -> None:
        self.cgroup.thaw()

    def move_address_away(self) -> None:
        """Frozen and network-locked: hand the service address over."""
        assert self.opts.move_address is not None
        addresses.delete(self.opts.move_address)
        self.address_moved = True
        sourcecopy.record_address(self.workdir, self.opts.move_address)  # for the guard

    async def ship_images(self) -> None:
        assert self.ch is not None
        files = image_files(self.workdir)
        total = 0
        for path in files:
            for msg in file_messages(path):
                if isinstance(msg, wire.FileChunk):
                    total += len(msg.data)
                await self.ch.send(msg)
        self.report.image_bytes = total
        self.opts.progress("TRANSFERRING", f"{len(files)} image files, {total >> 10} KiB")
        self.shipped = (len(files), total)

    def keep_what_the_restore_shares(self) -> None:
        """Frozen, before the destination restores: what its restore would take from this
        frozen tree where both nodes see one kernel or one filesystem: the data of its FIFOs
        (agent/fifos.py) and the names of its unix sockets (host/unix_names.py)."""
        assert self.tree is not None
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

    async def await_restored(self) -> wire.Restored:
        assert self.ch is not None
        answer = await self.ch.expect((wire.Restored, wire.Failed), self.opts.timeouts.restore)
        if isinstance(answer, wire.Failed):
            self.report.destination_log_tail = answer.log_tail
            what = "restore" if answer.code == "restore" else f"image transfer ({answer.code})"
            raise RemoteError(self.report.destination_node or self.ch.peer, answer.code,
                              f"{what} failed: {answer.message}")
        self.report.destination_pid = answer.pid
        self.report.criu["restore"] = dict(answer.stats)
        self.opts.progress("RESTORED", f"as PID {answer.pid} on the destination (stopped)")
        return answer

    async def await_committed(self) -> wire.Committed:
        """The destination resumed the workload: the downtime ends here."""
        assert self.ch is not None
        done = await self.ch.expect((wire.Committed,), self.opts.timeouts.commit)
        if self.freeze_at is not None:
            self.report.downtime_ms = (time.monotonic() - self.freeze_at) * 1000
        self.report.destination_pid = done.pid
        return done

    def lock_network(self) -> bool:
        """Whether the final dump takes CRIU's network lock (host/netlock.py:needed),
        remembered for :meth:`find_network_lock`."""
        assert self.tree is not None
        try:
            own = procfs.own_namespace(self.tree.pid, "net")
        except OSError:
            own = True  # cannot tell: lock, as before
        self.network_locked = netlock.needed(tcp_established=self.opts.tcp_established,
                                             own_net_ns=own, container=self.opts.in_container)
        return self.network_locked

    def find_network_lock(self) -> None:
        """While the destination restores: look up CRIU's lock tables here (none taken:
        nothing to look up, no ``nft`` run)."""
        if self.network_locked:
            self.net.find_network_lock()

    async def release_network_lock(self) -> None:
        await self.net.release_network_lock()

    def forward_inflight(self) -> None:
        self.net.forward_inflight()

    async def roll_back(self, exc: BaseException) -> bool:
        """Before the point of no return: resume the workload here and Abort; whether its
        tree survived (the driver enters RESUMING before, ROLLED_BACK or LOST after)."""
        assert self.tree is not None
        unix_names.give_back(self.parked)
        self.parked = []
        if self.address_moved and self.opts.move_address is not None:
            with contextlib.suppress(FerrymanError):
                addresses.add(self.opts.move_address)  # the service address comes back here
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
        return self.tree.alive()

    def collect_dump_stats(self, *, lazy: bool = False) -> None:
        collect_dump_stats(self.report, self.workdir, lazy=lazy)
