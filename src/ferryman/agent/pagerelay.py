"""The page relay: a dump's page stream, LZ4-compressed where it pays, over ferryman's own TLS.

A compressed cold dump (``--compress``, ``migration/compress.py``), a compressed post-copy
of a process tree and hybrid's lazy step (``Plan.lazy_relay``) do not open CRIU's own page
connection: each side's criu
gets one end of a socket pair (the source's dump as RPC ``ps.fd``, the destination's
``criu page-server --ps-socket`` or ``criu lazy-pages --ps-socket``) and speaks its
page-server protocol, unencrypted, to ferryman only. (Post-copy: the lazy dump answers the
lazy-pages daemon's requests, which travel back raw like a page server's answers.)
Between the nodes the stream travels in a TLS 1.3
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import lz4.block  # type: ignore[import-untyped]

from ferryman.criu.pacing import PAGE_TIMEOUT_MS
from ferryman.errors import FerrymanError, PeerRejected
from ferryman.host import deadlink, heap
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

    def count(self, raw_len: int, payload_len: int) -> None:
        """One frame of ``raw_len`` page-stream bytes whose payload is ``payload_len``."""
        self.raw_bytes += raw_len
        self.wire_bytes += payload_len + HEADER.size
        self.frames += 1
        self.compressed_frames += payload_len < raw_len


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


class FrameScan:
    """Where a stream of frames that someone else made stands: it validates each header and
    counts the frames into ``stats``, without copying their payloads (a lazy dump writing
    the frames itself, passed on as they are)."""

    def __init__(self, stats: RelayStats) -> None:
        self.stats = stats
        self.header = b""  # a header's first bytes, split between two reads
        self.payload_left = 0  # bytes of the current frame's payload still to come

    @property
    def at_boundary(self) -> bool:
        return not self.header and not self.payload_left

    def feed(self, data: bytes) -> None:
        """The next bytes of the stream; RelayError on a bad header (an empty frame too:
        only the relay ends the stream)."""
        view, at = memoryview(data), 0
        while at < len(view):
            if self.payload_left:
                k = min(self.payload_left, len(view) - at)
                self.payload_left -= k
                at += k
                continue
            need = HEADER.size - len(self.header)
            self.header += bytes(view[at : at + need])
            at += min(need, len(view) - at)
            if len(self.header) < HEADER.size:
                return
            raw_len, wire_len = HEADER.unpack(self.header)
            self.header = b""
            if raw_len == 0:
                raise RelayError("page relay: criu wrote an empty frame")
            check_header(raw_len, wire_len)
            self.payload_left = wire_len
            self.stats.count(raw_len, wire_len)


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(criu's end, ours): criu's is inheritable, ours non-blocking for asyncio. Each end
    queues up to ``PAIR_BUFFER`` bytes, so that the relay reads large chunks (they compress
    better and cost fewer frames) while criu writes on. This process's heap keeps the
    relay's chunk buffers from now on (host/heap.py)."""
    heap.keep_large_buffers()
    theirs, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for sk in (theirs, ours):
        try:  # root may go past net.core.wmem_max
            sk.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, PAIR_BUFFER)
        except OSError:
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PAIR_BUFFER)
    theirs.set_inheritable(True)
    ours.setblocking(False)
    return theirs, ours


# A relay socket's stalls bounded as CRIU's own page sockets are (our CRIU patch,
# ``usertimeout-page-sockets.patch``; ``criu/pacing.py``): TCP_USER_TIMEOUT for data the
# peer does not acknowledge (the SYN retries of a connect too), and keepalive probes every
# second, so that an idle relay over a cut link also fails within ``PAGE_TIMEOUT_MS``.
PAGE_BOUND = deadlink.Bound(idle=1, interval=1, count=PAGE_TIMEOUT_MS // 1000,
                            user_timeout_ms=PAGE_TIMEOUT_MS)


async def _criu_to_peer(ours: socket.socket, writer: asyncio.StreamWriter,
                        stats: RelayStats, compress: bool) -> None:
    loop = asyncio.get_running_loop()
    while chunk := await loop.sock_recv(ours, CHUNK):
        frame = pack(chunk, compress)
        stats.count(len(chunk), len(frame) - HEADER.size)
        writer.write(frame)
        await writer.drain()
    writer.write(END)
    await writer.drain()


async def _frames_from_criu(ours: socket.socket, writer: asyncio.StreamWriter,
                            stats: RelayStats) -> None:
    """As :func:`_criu_to_peer`, for a criu that writes the frames itself: its bytes go on
    as they came, and the end of the stream after its last whole frame."""
    loop = asyncio.get_running_loop()
    scan = FrameScan(stats)
    while data := await loop.sock_recv(ours, CHUNK):
        scan.feed(data)
        writer.write(data)
        await writer.drain()
    if not scan.at_boundary:
        raise RelayError("page relay: criu's page stream ended inside a frame")
    writer.write(END)
    await writer.drain()


async def _peer_to_criu_raw(reader: asyncio.StreamReader, ours: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while data := await reader.read(CHUNK):
        await loop.sock_sendall(ours, data)


async def _frames_to_criu(reader: asyncio.StreamReader, ours: socket.socket,
                          stats: RelayStats, decode: bool) -> None:
    """The frames from the peer into ``ours`` until the end-of-stream frame: decoded, or
    (``decode`` false) as they came, for a criu that decodes them itself (``criu
    lazy-pages`` with ``FERRYMAN_RELAY_FRAMES``). Each header is checked either way."""
    loop = asyncio.get_running_loop()
    while True:
        header = await reader.readexactly(HEADER.size)
        raw_len, wire_len = HEADER.unpack(header)
        if raw_len == 0:
            return
        check_header(raw_len, wire_len)
        payload = await reader.readexactly(wire_len)
        stats.count(raw_len, wire_len)
        await loop.sock_sendall(ours, unpack(raw_len, payload) if decode else header + payload)


async def _criu_to_peer_raw(ours: socket.socket, writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    while data := await loop.sock_recv(ours, CHUNK):
        writer.write(data)
        await writer.drain()


async def _first_to_end(main: asyncio.Future[None], back: asyncio.Future[None]) -> bool:
    """Until either direction ends: True if ``main`` did (it wins a tie). An error of
    either is raised; the caller cancels what is left."""
    done, _ = await asyncio.wait({main, back}, return_when=asyncio.FIRST_COMPLETED)
    for t in done:
        t.result()
    return main in done


async def _cancel(*tasks: asyncio.Future[None]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _shutdown(ours: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):  # closed already, or criu's end gone
        ours.shutdown(how)


async def _close(writer: asyncio.StreamWriter, ok: bool) -> None:
    """The TLS connection closed: in order after a clean end (its close_notify, bounded
    like the socket's stalls), at once (abort) after an error or a cancellation. asyncio's
    orderly close over a dead link would wait its own 30 s; and until it ends, data the
    peer still writes is taken and dropped."""
    if ok:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), PAGE_TIMEOUT_MS / 1000)
            return
    writer.transport.abort()


async def _connect(host: str, port: int, ctx: ssl.SSLContext, timeout: float
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection to the destination's relay, its socket's stalls bounded before the
    connect (a cut link fails the connect within ``PAGE_TIMEOUT_MS``, as CRIU's does)."""
    loop = asyncio.get_running_loop()
    family, kind, proto, _, addr = (await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(family, kind, proto)
    try:
        deadlink.bound(sock, PAGE_BOUND)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
        return await asyncio.wait_for(asyncio.open_connection(
            sock=sock, ssl=ctx, server_hostname=host, limit=STREAM_BUFFER), timeout)
    except BaseException:
        sock.close()
        raise


async def send_pages(host: str, port: int, ctx: ssl.SSLContext, ours: socket.socket,
                     stats: RelayStats, *, compress: bool = True, framed: bool = False,
                     pacing_bytes_per_s: int | None = None, timeout: float = 30.0) -> None:
    """The source's relay: criu's page stream from ``ours`` to the destination's relay at
    ``host:port`` in frames, its answers back. ``framed``: criu writes the frames itself
    (a lazy dump with ``FERRYMAN_RELAY_FRAMES``); they go on as they are.
    ``pacing_bytes_per_s``: ``--max-bandwidth`` on the TLS socket (CRIU paces only sockets
    it opens).

    Ends when the destination closes (its page server exited: after answering criu's last
    request, or killed), and ``ours`` is then shut down, so that a criu still writing or
    waiting for an answer fails at once rather than into a void; or when criu's end is
    closed (the dump is over), the answers still coming until the destination closes.
    Every stall is bounded (``PAGE_BOUND``); any break is a RelayError."""
    try:
        reader, writer = await _connect(host, port, ctx, timeout)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        raise RelayError(f"page relay: cannot reach {host}:{port}: {exc}") from exc
    writer.transport.set_write_buffer_limits(high=STREAM_BUFFER)
    sock = writer.get_extra_info("socket")
    if pacing_bytes_per_s is not None and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, pacing_bytes_per_s)
    main = asyncio.ensure_future(_frames_from_criu(ours, writer, stats) if framed
                                 else _criu_to_peer(ours, writer, stats, compress))
    back = asyncio.ensure_future(_peer_to_criu_raw(reader, ours))
    ok = False
    try:
        if await _first_to_end(main, back):
            await back  # the answers to criu's last request, until the destination closes
        ok = True
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        raise RelayError(f"page relay to {host}:{port} broke: {exc}") from exc
    finally:
        _shutdown(ours, socket.SHUT_RDWR)
        await _cancel(main, back)
        await _close(writer, ok)


class RelayServer:
    """The destination's relay: one TLS connection from ``peer`` (its certificate's node
    name), its frames into ``ours`` (the page server's socket), the answers back;
    ``decode``: the frames decoded here, else passed on as they came (a criu that decodes
    them itself).

    ``exited``: the page server's exit (``criu page-server`` itself, our child). The relay
    ends with it, whatever the socket says: a criu killed early can leave a helper child
    of its own that holds the socket open (seen: SIGKILLed during its start, an orphaned
    criu sleeping with the socket), and the source's criu would then write into a void
    and wait for an answer for ever. Once it exited, the answers it wrote are passed on
    and the connection is closed (the source's relay ends its criu's socket); a page
    server gone before the source connected closes the listening socket (its connect is
    refused, as CRIU's to a dead page server)."""

    def __init__(self, ctx: ssl.SSLContext, peer: str, ours: socket.socket,
                 exited: Callable[[], Awaitable[object]], *, decode: bool = True) -> None:
        self.ctx = ctx
        self.decode = decode
        self.peer = peer
        self.ours = ours
        self.stats = RelayStats()
        self.server: asyncio.Server | None = None
        self.connected = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.gone = asyncio.ensure_future(self._watch(exited))

    async def _watch(self, exited: Callable[[], Awaitable[object]]) -> None:
        await exited()
        if self.server is not None and not self.connected:
            self.server.close()  # nobody will be served: the source's connect fails
            self.server = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._handle, host, port, ssl=self.ctx,
                                                 limit=STREAM_BUFFER)
        if self.gone.done():  # exited already: refused, as a dead page server's port
            self.server.close()
            self.server = None

    async def _pass_answers(self, back: asyncio.Future[None],
                            writer: asyncio.StreamWriter) -> None:
        """Until the page server's answers have ended (its end closed) or it exited: then
        what it wrote before its exit goes on."""
        done, _ = await asyncio.wait({back, self.gone}, return_when=asyncio.FIRST_COMPLETED)
        if back in done:
            back.result()
            return
        await _cancel(back)
        while True:
            try:
                data = self.ours.recv(CHUNK)
            except BlockingIOError:
                return  # all it wrote (a child of its may hold the socket open)
            if not data:
                return
            writer.write(data)
            await writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected = True
        if self.server is not None:
            self.server.close()  # one connection only
        writer.transport.set_write_buffer_limits(high=STREAM_BUFFER)
        if (sock := writer.get_extra_info("socket")) is not None:
            deadlink.bound(sock, PAGE_BOUND)
        tasks: tuple[asyncio.Future[None], ...] = ()
        ok = False
        try:
            try:
                who = tls.peer_name(writer.get_extra_info("ssl_object"))
            except PeerRejected:
                who = "?"
            if who != self.peer or self.done.done():
                raise RelayError(f"page relay connection from {who}, expected {self.peer}")
            main = asyncio.ensure_future(_frames_to_criu(reader, self.ours, self.stats,
                                                         self.decode))
            back = asyncio.ensure_future(_criu_to_peer_raw(self.ours, writer))
            tasks = (main, back)
            done, _ = await asyncio.wait({main, back, self.gone},
                                         return_when=asyncio.FIRST_COMPLETED)
            if main in done:
                main.result()
                # the end of the stream: the page server sees it, answers criu's last
                # request and exits
                _shutdown(self.ours, socket.SHUT_WR)
            # else the page server closed its end or exited, answering criu's last
            # request or not (killed): the source's relay sees this connection close and
            # closes its criu's page socket
            await self._pass_answers(back, writer)
            ok = True
            if not self.done.done():
                self.done.set_result(None)
        except (FerrymanError, OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.warning("page relay from %s failed: %s", self.peer, exc)
            if not self.done.done():
                self.done.set_exception(RelayError(f"page relay from {self.peer}: {exc}"))
        finally:
            if tasks:  # the page server's stream is over, whichever way it ended
                _shutdown(self.ours, socket.SHUT_RDWR)
                await _cancel(*tasks)
            await _close(writer, ok)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        await _cancel(self.gone)
        self.ours.close()
        if not self.done.done():
            self.done.cancel()
        elif not self.done.cancelled():
            self.done.exception()  # logged when it failed; nobody else reads it
