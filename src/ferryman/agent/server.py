"""``ferryman serve``: the asyncio TLS agent. Each connection is one DESTINATION session."""

from __future__ import annotations

import asyncio
import logging
import signal

from ferryman import wire
from ferryman.agent.channel import Channel
from ferryman.agent.config import AgentConfig
from ferryman.agent.destination import DestinationSession, remove_incomplete
from ferryman.criu import stats
from ferryman.criu.client import Criu
from ferryman.errors import FerrymanError, PeerRejected
from ferryman.pki import tls

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.cfg = config
        self.criu = Criu(config.criu_bin)
        self._sessions: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        try:
            peer = tls.peer_name(writer.get_extra_info("ssl_object"))
        except PeerRejected:
            log.warning("connection from %s without a usable certificate: closed", addr)
            writer.close()
            return
        log.info("session from %s (%s)", peer, addr[0] if addr else "?")
        channel = Channel(reader, writer, wire.Role.DESTINATION, peer)
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await DestinationSession(channel, self.cfg, self.criu).run()
        except FerrymanError as exc:
            log.warning("session from %s ended: %s", peer, exc.one_line())
        finally:
            self._sessions.discard(task)

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        version = (await self.criu.facts(self.cfg.state_dir)).version  # asked once, at start
        stats.warm_up()  # restore stats are read between RESTORED and the reply
        ctx = tls.server_context(self.cfg.creds)
        for name in remove_incomplete(self.cfg.state_dir):
            log.warning("removed the images of interrupted migration %s", name)
        server = await asyncio.start_server(self._handle, self.cfg.listen_host,
                                            self.cfg.listen_port, ssl=ctx)
        log.info("agent %s listening on %s:%d (criu %s, state %s)", self.cfg.name,
                 self.cfg.listen_host, self.cfg.listen_port, version, self.cfg.state_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set()
        async with server:
            await stop.wait()
            log.info("agent %s stopping", self.cfg.name)
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
