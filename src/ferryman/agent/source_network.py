"""The SOURCE's network side of the freeze: CRIU's network lock and the held segments.

:class:`Handover` keeps what :class:`ferryman.agent.source.SourceMigration` learns about the
network while the workload is frozen: CRIU's lock tables here (looked up while the destination
restores, dropped past the point of no return) and, with live connections and a moving
address, copies of the segments that reach this node for it (forwarded after the commit).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ferryman.host import addresses, inflight, netlock
from ferryman.host.addresses import MoveAddress
from ferryman.host.inflight import InFlight
from ferryman.migration.report import MigrationReport

__all__ = ["Handover"]

log = logging.getLogger(__name__)


class Handover:
    def __init__(self, workdir: Path, move_address: MoveAddress | None, tcp_established: bool,
                 report: MigrationReport) -> None:
        self.workdir = workdir
        self.move_address = move_address
        self.tcp_established = tcp_established
        self.report = report
        self.lock: asyncio.Future[netlock.NetworkLock] | None = None  # CRIU's, on this node
        self.lock_release: asyncio.Future[list[str]] | None = None  # alongside the commit
        self.inflight: InFlight | None = None  # segments that reach us frozen (--move-address)

    def find_network_lock(self) -> None:
        """While the destination restores: look up CRIU's lock tables here (host/netlock.py;
        a lazy dump leaves one even without live connections)."""
        self.lock = asyncio.ensure_future(asyncio.to_thread(netlock.inspect, self.workdir))

    async def release_network_lock(self) -> None:
        """Past the point of no return: drop CRIU's lock on the moved connections here.

        A connection with an end on this node (a client here, ``--probe``) needs that before
        the destination resumes, or its first answers to that client are dropped here. Any
        other locked packet no longer comes here (the address left with the workload), so
        then the removal, one nftables commit of 10-40 ms, runs alongside the commit.
        """
        if self.lock is None:
            return
        lock = await self.lock
        if addresses.any_present(lock.addresses):
            netlock.remove(lock.tables)
        elif lock.tables:
            self.lock_release = asyncio.ensure_future(asyncio.to_thread(netlock.remove,
                                                                        lock.tables))

    def hold_inflight(self) -> None:
        """Freezing with live connections and a moving address: keep copies of the segments
        that reach this node for it until the destination has restored (host/inflight.py)."""
        a = self.move_address
        if a is None or not self.tcp_established or self.inflight is not None:
            return
        try:
            self.inflight = InFlight(a.ip, (a.dev, "lo"))
        except OSError as exc:
            log.warning("cannot hold the segments that reach %s while frozen (%s): a request "
                        "sent into the frozen window waits for the client's retransmission",
                        a.ip, exc)

    def forward_inflight(self) -> None:
        """After the commit: the held segments go on to the destination, which owns the
        address now; the report counts them."""
        held, self.inflight = self.inflight, None
        if held is None or self.move_address is None:
            return
        try:
            sent = held.forward(inflight.mtu(self.move_address.dev))
        except OSError as exc:
            held.close()
            log.warning("could not forward the segments held while frozen: %s", exc)
            return
        self.report.forwarded_packets = sent.sent
        log.info("forwarded %d segments that reached this node while frozen (%d held, %d "
                 "skipped)", sent.sent, sent.captured, sent.skipped)

    def drop_inflight(self) -> None:
        """The held segments go unsent: rolled back (the client resends to the source what
        it dropped), or the migration ended."""
        if self.inflight is not None:
            self.inflight.close()
            self.inflight = None

    async def settle(self) -> None:
        """The migration ends: wait for a lock removal still running."""
        if self.lock_release is not None:
            await asyncio.gather(self.lock_release, return_exceptions=True)
