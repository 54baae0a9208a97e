"""The page relay: a cold dump's page stream, LZ4-compressed, over ferryman's own TLS.

With compression on (``--compress``, ``migration/compress.py``) CRIU does not open its own
page connection: each side's criu gets one end of a socket pair (the source's dump as RPC
``ps.fd``, the destination's ``criu page-server --ps-socket``) and speaks its page-server
protocol, unencrypted, to ferryman only. Between the nodes the stream travels in a TLS 1.3
connection with the cluster's certificates on both sides (the destination checks that the
client is the control connection's peer; the port is behind the same nftables guard as
CRIU's page server). Source → destination, the bytes go as frames::

    <u32 raw length> <u32 payload length> <payload>

a payload shorter than its raw length is one LZ4 block (``lz4.block``, no size prefix),
an equal one is the raw bytes (a chunk that does not shrink is sent as it is); a raw length
of 0 ends the stream. Destination → source, the page server's few answers go as they are.
Each chunk is whatever CRIU had written (up to ``CHUNK``): the relay never waits for more,
so CRIU's request-answer steps (a flush, the final close) never stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from dataclasses import dataclass

import lz4.block  # type: ignore[import-untyped]

from ferryman.errors import FerrymanError, PeerRejected
from ferryman.pki import tls

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_RAW = 4 << 20  # a frame's raw length at most (the receiver's buffer bound)
HEADER = struct.Struct("<II")
SO_MAX_PACING_RATE = 47  # <asm-generic/socket.h>; not in Python's socket module
SO_SNDBUFFORCE = 32  # likewise
PAIR_BUFFER = 4 << 20
# asyncio's stream defaults (64 KiB reader limit, 64 KiB write high-water mark) would stop
# the relay after every frame until the last one was through: a deeper pipeline instead
STREAM_BUFFER = 8 << 20


class RelayError(FerrymanError):
    """The page relay's stream broke or was malformed."""


@dataclass
class RelayStats:
    """What went through: raw page-stream bytes, and bytes in frames on the TLS stream."""

    raw_bytes: int = 0
    wire_bytes: int = 0
    frames: int = 0
    compressed_frames: int = 0

    @property
    def ratio(self) -> float | None:
        return self.raw_bytes / self.wire_bytes if self.wire_bytes else None


def pack(chunk: bytes, compress: bool = True) -> bytes:
    """One frame of ``chunk`` (compressed when that makes it smaller)."""
    if compress:
        packed: bytes = lz4.block.compress(chunk, store_size=False)
        if len(packed) < len(chunk):
            return HEADER.pack(len(chunk), len(packed)) + packed
    return HEADER.pack(len(chunk), len(chunk)) + chunk


END = HEADER.pack(0, 0)


def unpack(raw_len: int, payload: bytes) -> bytes:
    """A frame's raw bytes (RelayError if they do not decode to ``raw_len``)."""
    if len(payload) == raw_len:
        return payload
    try:
        data: bytes = lz4.block.decompress(payload, uncompressed_size=raw_len)
    except lz4.block.LZ4BlockError as exc:
        raise RelayError(f"page relay: a frame does not decompress: {exc}") from exc
    if len(data) != raw_len:
        raise RelayError(f"page relay: a frame decompressed to {len(data)} bytes, "
                         f"not {raw_len}")
    return data


def check_header(raw_len: int, wire_len: int) -> None:
    if raw_len > MAX_RAW or wire_len > raw_len:
        raise RelayError(f"page relay: bad frame header ({raw_len}, {wire_len})")


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(criu's end, ours): criu's is inheritable, ours non-blocking for asyncio. Each end
    queues up to ``PAIR_BUFFER`` bytes, so that the relay reads large chunks (they compress
    better and cost fewer frames) while criu writes on."""
    theirs, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for sk in (theirs, ours):
        try:  # root may go past net.core.wmem_max
            sk.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, PAIR_BUFFER)
        except OSError:
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PAIR_BUFFER)
    theirs.set_inheritable(True)
    ours.setblocking(False)
    return theirs, ours


async def _criu_to_peer(ours: socket.socket, writer: asyncio.StreamWriter,
                        stats: RelayStats, compress: bool) -> None:
    loop = asyncio.get_running_loop()
    while chunk := await loop.sock_recv(ours, CHUNK):
        frame = pack(chunk, compress)
        stats.raw_bytes += len(chunk)
        stats.wire_bytes += len(frame)
        stats.frames += 1
        stats.compressed_frames += len(frame) - HEADER.size < len(chunk)
        writer.write(frame)
        await writer.drain()
    writer.write(END)
    await writer.drain()


async def _peer_to_criu_raw(reader: asyncio.StreamReader, ours: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while data := await reader.read(CHUNK):
        await loop.sock_sendall(ours, data)


async def _frames_to_criu(reader: asyncio.StreamReader, ours: socket.socket,
                          stats: RelayStats) -> None:
    loop = asyncio.get_running_loop()
    while True:
        raw_len, wire_len = HEADER.unpack(await reader.readexactly(HEADER.size))
        if raw_len == 0:
            return
        check_header(raw_len, wire_len)
        data = unpack(raw_len, await reader.readexactly(wire_len))
        stats.raw_bytes += raw_len
        stats.wire_bytes += wire_len + HEADER.size
        stats.frames += 1
        await loop.sock_sendall(ours, data)


async def _criu_to_peer_raw(ours: socket.socket, writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    while data := await loop.sock_recv(ours, CHUNK):
        writer.write(data)
        await writer.drain()


async def _both(a: asyncio.Future[None], b: asyncio.Future[None]) -> None:
    """Until ``a`` ends (the main direction); ``b`` is then cancelled; errors of either
    are raised."""
    try:
        done, _ = await asyncio.wait({a, b}, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
        await a
    finally:
        for t in (a, b):
            t.cancel()
        await asyncio.gather(a, b, return_exceptions=True)


async def send_pages(host: str, port: int, ctx: ssl.SSLContext, ours: socket.socket,
                     stats: RelayStats, *, compress: bool = True,
                     pacing_bytes_per_s: int | None = None, timeout: float = 30.0) -> None:
    """The source's relay: criu's page stream from ``ours`` to the destination's relay at
    ``host:port`` in frames, its answers back. Ends when criu closed its end (the dump is
    over) and the answers are through. ``pacing_bytes_per_s``: ``--max-bandwidth`` on the
    TLS socket (CRIU paces only sockets it opens)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host,
                                    limit=STREAM_BUFFER), timeout)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        raise RelayError(f"page relay: cannot reach {host}:{port}: {exc}") from exc
    writer.transport.set_write_buffer_limits(high=STREAM_BUFFER)
    sock = writer.get_extra_info("socket")
    if pacing_bytes_per_s is not None and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, pacing_bytes_per_s)
    try:
        await _both(asyncio.ensure_future(_criu_to_peer(ours, writer, stats, compress)),
                    asyncio.ensure_future(_peer_to_criu_raw(reader, ours)))
        # the answers to criu's last request come after its stream ended: wait for the
        # destination to close (its page server exited)
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                with contextlib.suppress(OSError):
                    await asyncio.get_running_loop().sock_sendall(ours, data)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        raise RelayError(f"page relay to {host}:{port} broke: {exc}") from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


class RelayServer:
    """The destination's relay: one TLS connection from ``peer`` (its certificate's node
    name), its frames into ``ours`` (the page server's socket), the answers back."""

    def __init__(self, ctx: ssl.SSLContext, peer: str, ours: socket.socket) -> None:
        self.ctx = ctx
        self.peer = peer
        self.ours = ours
        self.stats = RelayStats()
        self.server: asyncio.Server | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, host, port, ssl=self.ctx,
                                                 limit=STREAM_BUFFER)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.server is not None:
            self.server.close()  # one connection only
        writer.transport.set_write_buffer_limits(high=STREAM_BUFFER)
        try:
            try:
                who = tls.peer_name(writer.get_extra_info("ssl_object"))
            except PeerRejected:
                who = "?"
            if who != self.peer or self.done.done():
                raise RelayError(f"page relay connection from {who}, expected {self.peer}")
            await _both(asyncio.ensure_future(_frames_to_criu(reader, self.ours, self.stats)),
                        asyncio.ensure_future(_criu_to_peer_raw(self.ours, writer)))
            # criu's answers after the last frame, until it closes its end (it exited)
            await _criu_to_peer_raw(self.ours, writer)
            if not self.done.done():
                self.done.set_result(None)
        except (FerrymanError, OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.warning("page relay from %s failed: %s", self.peer, exc)
            if not self.done.done():
                self.done.set_exception(RelayError(f"page relay from {self.peer}: {exc}"))
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.ours.close()
        if not self.done.done():
            self.done.cancel()
