"""An async control channel: a sans-IO ``wire.Connection`` over an asyncio TLS stream."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import TypeVar, overload

from ferryman import wire
from ferryman.agent.limits import BufferBudget
from ferryman.errors import PeerLost, PeerRejected, RemoteError
from ferryman.host import deadlink

M = TypeVar("M")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")

READ_SIZE = 256 * 1024


def tune_socket(sock: socket.socket | None) -> None:
    """A control connection: the dead-link bound (host/deadlink.py) and no Nagle delay."""
    if sock is None:
        return
    deadlink.bound(sock)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Channel:
    """Sends and receives control messages; every wait has a timeout.

    A receive's timeout is for the whole message, however its bytes trickle in. ``budget``
    (an agent's): the bytes of incomplete frames this channel may hold, shared with others.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 role: wire.Role, peer: str, budget: BufferBudget | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = wire.Connection(role)
        self.peer = peer
        self.budget = budget
        self.bytes_sent = 0
        # Asked now: a transport the peer has reset answers None
        self.peer_ip: str = str(writer.get_extra_info("peername")[0])
        self.local_ip: str = str(writer.get_extra_info("sockname")[0])
        tune_socket(writer.get_extra_info("socket"))

    async def send(self, msg: wire.Message) -> None:
        data = self.conn.send(msg)
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            self.conn.send_failed()
            raise PeerLost(self.peer, f"lost the connection to {self.peer}: {exc}") from exc
        self.bytes_sent += len(data)

    async def receive(self, timeout: float) -> wire.Message:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self.conn.next_event()
            if event is wire.NEED_DATA:
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_SIZE),
                                                  max(0.0, deadline - loop.time()))
                except TimeoutError as exc:
                    raise PeerLost(self.peer, f"{self.peer} did not answer within "
                                   f"{timeout:.0f} s") from exc
                except ssl.SSLError as exc:
                    raise PeerRejected(
                        self.peer, f"{self.peer} refused our TLS credentials ({exc.reason})",
                        hint="issue this node's certificate from the cluster CA: "
                             "'ferryman pki issue NAME --pki DIR'") from exc
                except (ConnectionError, OSError) as exc:
                    raise PeerLost(self.peer, f"lost the connection to {self.peer}: {exc}"
                                   ) from exc
                if not data and self.conn.state not in wire.FINAL_STATES:
                    self.conn.receive_data(data)
                    raise PeerLost(self.peer, f"{self.peer} closed the connection")
                self.conn.receive_data(data)
                self._hold_buffered()
                continue
            if isinstance(event, wire.ConnectionClosed):
                raise PeerLost(self.peer, f"{self.peer} closed the connection")
            assert isinstance(event, wire.Message)
            self._hold_buffered()
            return event

    async def wait_peer_closed(self) -> None:
        """Returns once the peer has closed (or reset) the connection. Whatever it sends
        meanwhile is kept for :meth:`receive`, as if it had not been read yet."""
        while True:
            try:
                data = await self.reader.read(READ_SIZE)
            except (ConnectionError, OSError, ssl.SSLError):
                return
            self.conn.receive_data(data)  # b"": the end, which receive() reports in turn
            self._hold_buffered()
            if not data:
                return

    def _hold_buffered(self) -> None:
        """Account for the bytes the decoder holds; PeerLost when the agent has no room."""
        if self.budget is None:
            return
        held = self.conn.statistics().bytes_buffered
        if not self.budget.claim(self, held):
            raise PeerLost(self.peer, f"{self.peer} sent more than this agent buffers for all "
                           f"its peers together ({self.budget.limit >> 20} MiB): session ended")

    @overload
    async def expect(self, kinds: tuple[type[A]], timeout: float) -> A: ...
    @overload
    async def expect(self, kinds: tuple[type[A], type[B]], timeout: float) -> A | B: ...
    @overload
    async def expect(self, kinds: tuple[type[A], type[B], type[C]], timeout: float
                     ) -> A | B | C: ...
    @overload
    async def expect(self, kinds: tuple[type[A], type[B], type[C], type[D]], timeout: float
                     ) -> A | B | C | D: ...
    @overload
    async def expect(self, kinds: tuple[type[A], type[B], type[C], type[D], type[E]],
                     timeout: float) -> A | B | C | D | E: ...

    async def expect(self, kinds: tuple[type[M], ...], timeout: float) -> M:
        """The next message, which must be one of ``kinds``; a peer's Error raises RemoteError."""
        msg = await self.receive(timeout)
        if isinstance(msg, wire.Error) and wire.Error not in kinds:
            raise RemoteError(self.peer, msg.code, msg.message)
        if not isinstance(msg, kinds):
            raise RemoteError(self.peer, "protocol", f"unexpected {type(msg).__name__}")
        return msg

    def hang_up(self) -> None:
        """Say goodbye (TLS close_notify, then FIN) without waiting for the peer's:
        :meth:`close` still waits for it, later."""
        with contextlib.suppress(OSError, ssl.SSLError):
            self.writer.close()

    async def close(self) -> None:
        if self.budget is not None:
            self.budget.release(self)
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2)
