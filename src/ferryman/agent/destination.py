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
import shutil
import time
from pathlib import Path

from ferryman import testhooks, wire
from ferryman.agent.channel import Channel
from ferryman.agent.config import AgentConfig
from ferryman.agent.container import DestinationContainer, with_tools
from ferryman.agent.destination_drive import DestinationDrive
from ferryman.agent.destination_end import fail, remove_incomplete
from ferryman.agent.destination_lazy import start_lazy_relay
from ferryman.agent.destination_pages import lazy_blocker, open_set, start_page_server
from ferryman.agent.destination_role import LazyRelayEnd
from ferryman.agent.hello import identity_mismatch, local_hello
from ferryman.agent.imageseal import ImageSeal
from ferryman.agent.limits import Slots
from ferryman.agent.pagerelay import RelayServer
from ferryman.agent.podman_destination import destination_prepare
from ferryman.agent.preflight import serve_checks
from ferryman.criu.client import Criu, TlsFiles
from ferryman.criu.page_server import CriuDaemon
from ferryman.errors import FerrymanError, PeerLost, Refusal
from ferryman.host import addresses, portguard
from ferryman.host.prefault import Reserve, free_pages_reported, spare_memory
from ferryman.migration.destination_driver import (
    LAZY_START_AFTER,
    DestinationDriver,
    PlanRefused,
    Prepared,
)
from ferryman.migration.phases import DESTINATION_TABLE, DestinationPhase, PhaseTracker
from ferryman.migration.prefault import came_resident, plan_prefault
from ferryman.mode import MODES
from ferryman.targets.process import ProcessTree

# remove_incomplete lives in agent/destination_end.py; importable from here too.
__all__ = ["LAZY_START_AFTER", "SUPPORTED_MODES", "DestinationSession", "remove_incomplete"]

log = logging.getLogger(__name__)
D = DestinationPhase
SUPPORTED_MODES = MODES  # every mode: this agent implements them all


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
        self.relay: RelayServer | None = None  # --compress: feeds page_server
        self.lazy_pages: CriuDaemon | None = None
        self.early_lazy: asyncio.Future[CriuDaemon] | None = None  # started on pstree.img
        self.lazy_end: LazyRelayEnd | None = None  # post-copy through the page relay
        self.moving: addresses.MoveAddress | None = None
        self.address_added = False
        self.tree: ProcessTree | None = None
        self.plan: wire.Plan | None = None
        self.sets = 0  # pre-copy: image sets pre-1 .. pre-N received so far (their pages)
        self.guards: list[portguard.PortGuard] = []  # page-server ports only the source reaches
        self.box: DestinationContainer | None = None  # a runc container arriving
        self.held = False  # an ORPHANED record names our restored, uncommitted tree
        self.sync_port = 0
        self.seal: ImageSeal | None = None  # each image file as it arrived
        self.reserve: Reserve | None = None  # memory made resident for the restore
        self.prefaulted = (0, 0)  # bytes made resident before the Ready, ms it took

    @property
    def tls(self) -> TlsFiles:
        creds = self.cfg.creds
        return TlsFiles(cacert=creds.ca, cert=creds.cert, key=creds.key)

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
            driver = DestinationDriver(lazy=plan.lazy, streamed=plan.streamed)
            try:
                port = await self._prepare(hello, plan)
            except Refusal as exc:
                log.warning("refused migration %s: %s", plan.migration_id, exc)
                # cleaned up first: the peer may be gone, and the send fail
                await DestinationDrive(self, driver, refusal=exc).run(PlanRefused(exc.code))
                return
            await DestinationDrive(self, driver, port=port).run(Prepared())
        except (FerrymanError, OSError) as exc:
            await fail(self, exc)
        except asyncio.CancelledError:
            await fail(self, PeerLost(self.ch.peer, "agent shutting down"))
            raise
        except Exception as exc:  # a bug of ours: clean up and say so, then let it show
            log.exception("session from %s broke", self.ch.peer)
            await fail(self, exc)
            with contextlib.suppress(FerrymanError):
                await self.ch.send(wire.Error(code="internal", message=f"{self.cfg.name}: "
                                              f"internal error ({type(exc).__name__}); see "
                                              f"its log"))
            raise
        finally:
            if self.reserve is not None:
                self.reserve.release()
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
        if plan.lazy_dump and (why := await lazy_blocker(self)) is not None:
            raise Refusal("feature", why)
        workdir = self.cfg.state_dir / "migrations" / plan.migration_id
        try:
            workdir.mkdir(parents=True, mode=0o700)
        except FileExistsError as exc:
            raise Refusal("duplicate", f"migration {plan.migration_id} exists here") from exc
        self.workdir = workdir
        self.seal = ImageSeal(workdir)
        # CRIU's CPU check runs while the page server starts (a refusal cleans both up)
        cpu = asyncio.ensure_future(self._cpu_check(workdir, hello.cpuinfo))
        # and the memory the frozen window will need is made resident meanwhile
        filling = asyncio.ensure_future(self._prefault(plan))
        try:
            port = await self._receive(plan, workdir)
        except BaseException:
            await asyncio.gather(cpu, filling, return_exceptions=True)
            raise
        pages = await filling
        if self.reserve is not None:  # the images' page cache takes it from the freeze on
            self.reserve.release(pages)
        why = await cpu
        if why is not None:
            raise Refusal("cpu", f"the source's CPU is not compatible with this one: {why}")
        return port

    async def _prefault(self, plan: wire.Plan) -> int:
        """Make resident what the plan's frozen window will take here (migration/
        prefault.py); the part to give back when the pages start arriving."""
        want = plan_prefault(self.cfg.prefault, reported=free_pages_reported(),
                             rss_bytes=plan.rss_bytes,
                             # a streamed cold restore's pages go into the tree, no page cache
                             pages_frozen=not plan.mode.pre_copies and not plan.streamed,
                             lazy=plan.lazy, available=spare_memory())
        if not want.total:
            return 0
        self.reserve = reserve = Reserve()
        t0 = time.monotonic()
        try:  # bounded: the source waits for the Ready at most timeouts.plan
            await asyncio.to_thread(reserve.fill, want.total, t0 + self.cfg.timeouts.plan / 3)
        except (OSError, MemoryError) as exc:
            log.warning("made %d of %d MiB resident before the freeze: %s",
                        reserve.size >> 20, want.total >> 20, exc)
        ms = round((time.monotonic() - t0) * 1000)
        self.prefaulted = (reserve.size, ms)
        if self.cfg.prefault == "auto" and came_resident(reserve.timings):
            given = await asyncio.to_thread(reserve.release)
            self.reserve = None
            self.prefaulted = (0, ms)  # nothing held for the frozen window
            log.info("migration %s: %d MiB made resident in %d ms, all of it resident already "
                     "(--prefault auto): given back before the freeze",
                     plan.migration_id, given >> 20, ms)
            return 0
        log.info("migration %s: %d MiB made resident before the freeze in %d ms (--prefault "
                 "%s)", plan.migration_id, reserve.size >> 20, ms, self.cfg.prefault)
        return want.pages

    async def _cpu_check(self, workdir: Path, cpuinfo: bytes) -> str | None:
        """Why the source's CPU (its ``cpuinfo.img``) cannot run here, or None; the image
        is gone again when this returns."""
        check = workdir / "cpu-check"  # not among the images the page server writes
        try:
            check.mkdir()
            (check / "cpuinfo.img").write_bytes(cpuinfo)
            return await self.criu.cpuinfo_check(check)
        finally:
            shutil.rmtree(check, ignore_errors=True)

    async def _receive(self, plan: wire.Plan, workdir: Path) -> int:
        """The runc bundle's sync and the page server (or relay) for the Plan: its port."""
        if plan.target:
            try:
                self.box, self.sync_port = await destination_prepare(self.cfg, plan.target,
                                                                     self.ch.peer)
            except FerrymanError as exc:
                raise Refusal("runc", exc.one_line()) from exc
        try:
            if plan.lazy_dump:
                # Pages come from the source's page server, on demand, through the page
                # relay if the Plan says so. (The lazy-pages daemon starts once the images
                # it reads first are here.)
                return await start_lazy_relay(self) if plan.lazy_relay else 0
            if plan.mode.pre_copies:
                return await open_set(self, None)
            return await start_page_server(self, workdir, None)
        except FerrymanError as exc:  # CRIU's or the guard's: this node cannot receive now
            raise Refusal("page-server", exc.one_line()) from exc
