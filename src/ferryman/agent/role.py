"""What the SOURCE role's helpers may use of it: its options, and a narrow port.

:class:`SourceOptions` are what ``ferryman migrate`` (and ``check``) pass to the SOURCE role.
:class:`SourceRole` is the part of :class:`ferryman.agent.source.SourceMigration` that the
modules carrying out one part of a migration use (agent/container.py, gate.py, precopy.py,
postcopy.py): they are given the migration as a ``SourceRole`` and never import
agent/source.py, so the imports run one way (source.py -> them -> this module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ferryman import wire
from ferryman.agent.channel import Channel
from ferryman.agent.config import Timeouts
from ferryman.criu.client import Criu
from ferryman.host.addresses import MoveAddress
from ferryman.host.wptrack import WriteTracker
from ferryman.migration.compress import Compress
from ferryman.migration.phases import PhaseTracker, SourcePhase
from ferryman.migration.precopy_plan import PrecopyOptions
from ferryman.migration.report import MigrationReport
from ferryman.mode import Mode
from ferryman.pki import NodeCredentials
from ferryman.targets.podman import PodmanTarget
from ferryman.targets.process import ProcessTree
from ferryman.targets.runc import RuncTarget
from ferryman.targets.runc_checkpoint import Dumper

__all__ = ["ProgressFn", "SourceOptions", "SourceRole"]

ProgressFn = Callable[[str, str], None]


@dataclass
class SourceOptions:
    pid: int
    host: str
    port: int
    creds: NodeCredentials
    state_dir: Path
    mode: Mode = Mode.COLD
    tcp_established: bool = False
    move_address: MoveAddress | None = None
    criu_bin: str = "criu"
    precopy: PrecopyOptions = field(default_factory=PrecopyOptions)
    timeouts: Timeouts = field(default_factory=Timeouts)
    progress: ProgressFn = lambda phase, detail: None
    container: RuncTarget | None = None  # a runc container instead of ``pid``
    max_bandwidth_mbit: float | None = None  # the pages' cap on the wire (every mode)
    podman: PodmanTarget | None = None  # a Podman container instead of ``pid``
    compress: Compress = Compress.AUTO  # --compress (migration/compress.py)
    stream_cold: bool = True  # --cold-restore streamed (migration/plan.py, rule 5)

    @property
    def in_container(self) -> bool:
        """A container (runc's or Podman's): runc checkpoints and pre-dumps it."""
        return self.container is not None or self.podman is not None


class SourceRole(Protocol):
    """The SOURCE role as its helpers see it (implemented by ``SourceMigration``)."""

    opts: SourceOptions
    criu: Criu
    report: MigrationReport
    tracker: PhaseTracker[SourcePhase]
    workdir: Path
    ch: Channel | None
    tree: ProcessTree | None
    dumper: Dumper
    sync_port: int
    ps_port: int  # lazy: CRIU's page server here (the Plan names it)
    pages_from: str  # lazy: the only address that may reach it (the Ready names it)
    write_tracker: WriteTracker | None  # pre-copy without soft-dirty (host/wptrack.py)
    freeze_at: float | None
    compressed: bool  # --compress: the dump's pages go through the page relay, LZ4
    lazy_relay: bool  # a lazy dump's pages go through the page relay (LZ4 if compressed)
    criu_frames: bool  # ... in frames the lazy dump compresses itself (relay_frames probe)

    @property
    def pid(self) -> int:
        """The workload's root PID here, resolved once (the container's init for runc)."""

    def phase(self, phase: SourcePhase, detail: str = "") -> None:
        """Enter ``phase`` (the table refuses an illegal step) and tell the user."""

    def find_freezer(self) -> str | None:
        """The cgroup to hand CRIU as ``freeze_cgroup`` (we freeze it at pre-dump), or None."""

    def freeze_window(self) -> None:
        """CRIU's pre-dump: hold in-flight segments, freeze our cgroup, note the freeze."""

    def thaw(self) -> None:
        """Thaw the cgroup we froze, if any."""

    def move_address_away(self) -> None:
        """Frozen and network-locked: delete the service address here."""

    async def ship_images(self) -> None:
        """Send the final dump's image files to the destination."""

    def keep_what_the_restore_shares(self) -> None:
        """A process tree on one host: its FIFOs' data and unix socket names, kept."""

    async def await_committed(self) -> wire.Committed:
        """Wait for Committed (the destination resumed the workload: downtime ends)."""

    async def await_restored(self) -> wire.Restored:
        """Wait for the destination's Restored (RemoteError on Failed)."""

    async def roll_back(self, exc: BaseException) -> bool:
        """Before the point of no return: resume the workload here, Abort; whether its tree
        survived."""

    def collect_dump_stats(self, *, lazy: bool = False) -> None:
        """CRIU's dump statistics and log paths into the report."""

    def criu_holds_tree(self) -> bool:
        """CRIU still holds the frozen source tree (it did not die and let it run on)."""

    def mark_commit(self) -> None:
        """Tell the guard (agent/lockguard.py) that the commit is going out."""

    def queue_stop_source(self) -> None:
        """Queue a SIGSTOP to every source task (point of no return)."""

    def guard_left_stopped(self) -> None:
        """Name the tree a lazy dump left stopped (and the cgroup it left frozen) to the
        guard (agent/lockguard.py)."""

    def restore_message(self, page_server_port: int = 0) -> wire.Restore:
        """The Restore to send once the images are shipped."""

    def lock_network(self) -> bool:
        """Whether the final dump takes CRIU's network lock (host/netlock.py:needed)."""
        ...

    def find_network_lock(self) -> None:
        """Look up CRIU's lock tables while the destination restores."""

    async def release_network_lock(self) -> None:
        """Past the point of no return: drop CRIU's network lock here."""

    def forward_inflight(self) -> None:
        """After the commit: send the segments held while frozen on to the destination."""
