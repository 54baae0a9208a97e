"""What the DESTINATION session's helpers may use of it: a narrow port.

:class:`DestinationRole` is the part of :class:`ferryman.agent.destination.DestinationSession`
that the modules carrying out one part of a received migration use (destination_pages.py,
destination_lazy.py, destination_restore.py, destination_end.py): they are given the session
as a ``DestinationRole`` and never import agent/destination.py, so the imports run one way
(destination.py -> them -> this module), as for the SOURCE role (agent/role.py).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ferryman import wire
from ferryman.agent.channel import Channel
from ferryman.agent.config import AgentConfig
from ferryman.agent.container import DestinationContainer
from ferryman.agent.imageseal import ImageSeal
from ferryman.agent.pagerelay import RelayServer
from ferryman.criu.client import Criu, TlsFiles
from ferryman.criu.page_server import CriuDaemon
from ferryman.host import addresses, portguard
from ferryman.host.prefault import Reserve
from ferryman.migration.phases import DestinationPhase, PhaseTracker
from ferryman.targets.process import ProcessTree

__all__ = ["DestinationRole", "LazyRelayEnd"]


@dataclass
class LazyRelayEnd:
    """Post-copy through the page relay: the lazy-pages daemon's end of the relay's socket
    pair until the daemon takes it, and the daemon once started (whose exit ends the
    relay's stream)."""

    sock: socket.socket
    frames: bool  # the daemon decodes the relay's frames itself (FERRYMAN_RELAY_FRAMES)
    daemon: asyncio.Future[CriuDaemon] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class DestinationRole(Protocol):
    """The DESTINATION session as its helpers see it (implemented by ``DestinationSession``)."""

    ch: Channel
    cfg: AgentConfig
    criu: Criu
    tracker: PhaseTracker[DestinationPhase]
    workdir: Path | None
    page_server: CriuDaemon | None
    relay: RelayServer | None  # --compress: the page relay feeding page_server
    lazy_pages: CriuDaemon | None
    early_lazy: asyncio.Future[CriuDaemon] | None  # started on pstree.img
    lazy_end: LazyRelayEnd | None  # post-copy through the page relay
    moving: addresses.MoveAddress | None
    address_added: bool
    tree: ProcessTree | None
    plan: wire.Plan | None
    sets: int  # pre-copy: image sets pre-1 .. pre-N received so far (their pages)
    guards: list[portguard.PortGuard]  # page-server ports only the source reaches
    box: DestinationContainer | None  # a runc or Podman container arriving
    held: bool  # an ORPHANED record names our restored, uncommitted tree
    sync_port: int  # a runc container's sync listener (Ready names it)
    seal: ImageSeal | None  # each image file's size and SHA-256 as it arrived
    reserve: Reserve | None  # memory made resident before the freeze (serve --prefault)
    prefaulted: tuple[int, int]  # its bytes, and the ms it took

    @property
    def tls(self) -> TlsFiles:
        """This agent's TLS files, for CRIU's page server and lazy-pages daemon."""
