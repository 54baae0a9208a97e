"""The destination's end of a directory sync: a TLS listener that runs ``rsync --server``.

One listener per migration, on the agent's address and a fresh port, for the migration's
source node only (its client certificate's name must match the control connection's peer).
Each connection starts with the remote command rsync asked for (one JSON line), which
:func:`ferryman.fs.rsync.server_argv` accepts or refuses; the answer is one line ("OK", or
"ERR reason", which the tunnel prints for rsync), then the connection carries rsync's
protocol between the tunnel and our ``rsync --server``: raw towards rsync, framed back (see
:data:`ferryman.fs.tunnel.FRAME`) so that its stderr reaches the source's rsync too.
See :mod:`ferryman.fs.rsync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path

from ferryman.errors import FerrymanError, PeerRejected, SyncError
from ferryman.fs.rsync import server_argv
from ferryman.fs.tunnel import FRAME
from ferryman.host import deadlink
from ferryman.pki import tls

log = logging.getLogger(__name__)
MAX_HEADER = 64 << 10
CHUNK = 1 << 16


class SyncServer:
    """Accepts rsync connections from ``peer`` into the ``allowed`` directories, which the
    source knows by name only (``bundle``, ``rootfs``)."""

    def __init__(self, ctx: ssl.SSLContext, peer: str, allowed: Mapping[str, Path],
                 rsync: str = "rsync") -> None:
        self.ctx = ctx
        self.peer = peer
        self.allowed = dict(allowed)
        self.rsync = rsync
        self.server: asyncio.Server | None = None
        self.failures: list[str] = []
        self.syncs = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str) -> int:
        """Listen on ``host`` (a kernel-chosen port, returned)."""
        self.server = await asyncio.start_server(self._handle, host, 0, ssl=self.ctx,
                                                 limit=MAX_HEADER)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if (sock := writer.get_extra_info("socket")) is not None:
                deadlink.bound(sock)  # a cut link ends rsync --server within ~5 s
            await self._serve(reader, writer)
        except (FerrymanError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
            log.warning("sync connection from %s failed: %s", self.peer, exc)
            self.failures.append(str(exc))
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            who = tls.peer_name(writer.get_extra_info("ssl_object"))
        except PeerRejected:
            who = "?"
        if who != self.peer:
            raise SyncError("?", f"sync connection from {who}, expected {self.peer}")
        header = await reader.readline()
        try:
            remote = json.loads(header)
            if not isinstance(remote, list) or not all(isinstance(w, str) for w in remote):
                raise SyncError("?", "the sync request is not a command line")
            argv = server_argv(remote, self.allowed, self.rsync)
            Path(argv[-1]).mkdir(mode=0o755, parents=True, exist_ok=True)  # noqa: ASYNC240 - once a phase
        except (SyncError, ValueError, OSError) as exc:
            writer.write(b"ERR " + str(exc).encode()[:2000] + b"\n")
            await writer.drain()
            raise
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        writer.write(b"OK\n")
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        to_rsync = asyncio.ensure_future(_pump(reader, proc.stdin))
        from_rsync = asyncio.ensure_future(_copy_out(proc.stdout, writer, 1))
        errors = asyncio.ensure_future(_copy_out(proc.stderr, writer, 2))
        try:
            rc = await proc.wait()
            await from_rsync
            err = await errors
        finally:
            for t in (to_rsync, from_rsync, errors):
                t.cancel()
            await asyncio.gather(to_rsync, from_rsync, errors, return_exceptions=True)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        self.syncs += 1
        if rc != 0:
            raise SyncError(argv[-1], f"rsync --server exited with {rc}: "
                            f"{err.decode(errors='replace').strip()[:500]}", exit_status=rc)
        log.info("synced %s from %s", argv[-1], self.peer)


async def _pump(reader: asyncio.StreamReader, stdin: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            stdin.write(data)
            await stdin.drain()
    finally:
        stdin.close()


async def _copy_out(source: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    channel: int) -> bytes:
    """Frame ``source``'s output onto ``writer``; returns the last bytes (for a log line)."""
    tail = b""
    while data := await source.read(CHUNK):
        writer.write(FRAME.pack(channel, len(data)) + data)
        await writer.drain()
        tail = (tail + data)[-2000:]
    return tail
