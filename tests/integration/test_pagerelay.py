"""The page relay's two ends over real loopback TLS, with a real process as the page server.

The fault matrix (``cold relay``) breaks whole migrations; here the relay's own promise is
checked where the matrix cannot aim: a page server that exits while a child of its holds its
socket open (what a criu SIGKILLed during its start-up leaves: an orphaned helper) must end
both relays, and the source's criu must see its page socket end, within seconds, never wait.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.agent import pagerelay
from ferryman.criu.page_server import free_port
from ferryman.pki import NodeCredentials, init_ca, issue_node, load_node, system_clock
from ferryman.pki.tls import client_context, server_context

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
BOUND = 10.0  # seconds: the relays end well within this (the socket bound is 5 s)


@pytest.fixture
def creds(tmp_path: Path) -> tuple[NodeCredentials, NodeCredentials]:
    d = tmp_path / "pki"
    init_ca(d, clock=system_clock)
    issue_node(d, "node_a", [], clock=system_clock)
    issue_node(d, "node_b", [], clock=system_clock)
    return load_node(d, "node_a"), load_node(d, "node_b")


@pytest.fixture
def orphaning_page_server() -> Iterator[tuple[subprocess.Popen[bytes], socket.socket]]:
    """A stand-in for B's page server on a socket pair: it reads 1 MiB of the stream and
    exits, leaving a child (sleep) that holds the socket open (as fd 3: sh gives a
    background job /dev/null as its input); (the process, our end)."""
    theirs, ours = pagerelay.socket_pair()
    proc = subprocess.Popen(["sh", "-c", "exec 3<&0; sleep 60 & exec 3<&-; "
                             "head -c 1048576 >/dev/null"],
                            stdin=theirs, start_new_session=True)
    theirs.close()
    try:
        yield proc, ours
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the orphaned sleep, by its session
        proc.wait()
        ours.close()


def _in_session(sid: int) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getsid(int(d)) == sid:
                    found.append(int(d))
            except ProcessLookupError:
                continue
    return found


async def write_pages(sk: socket.socket, total: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(total >> 16):
        await loop.sock_sendall(sk, os.urandom(1 << 16))  # incompressible: fills buffers


def test_a_page_server_gone_mid_stream_ends_both_relays(
        creds: tuple[NodeCredentials, NodeCredentials],
        orphaning_page_server: tuple[subprocess.Popen[bytes], socket.socket]) -> None:
    a, b = creds
    proc, b_ours = orphaning_page_server

    async def scenario() -> tuple[float, bytes]:
        loop = asyncio.get_running_loop()
        server = pagerelay.RelayServer(server_context(b), "node_a", b_ours,
                                       lambda: asyncio.to_thread(proc.wait))
        await server.start(LOOPBACK, 0)
        assert server.server is not None
        port = server.server.sockets[0].getsockname()[1]
        criu, a_ours = pagerelay.socket_pair()  # criu's end and the source relay's
        criu.setblocking(False)
        relay = asyncio.ensure_future(pagerelay.send_pages(
            LOOPBACK, port, client_context(a), a_ours, pagerelay.RelayStats()))
        t0 = time.monotonic()
        try:
            # criu: pages until its socket refuses them, then it waits for an answer
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                await asyncio.wait_for(write_pages(criu, 64 << 20), BOUND)
            answer = await asyncio.wait_for(loop.sock_recv(criu, 1), BOUND)
            await asyncio.wait_for(relay, BOUND)  # ended: no error of its own
            await asyncio.wait_for(server.done, BOUND)
            return time.monotonic() - t0, answer
        finally:
            relay.cancel()
            await server.close()
            criu.close()
            a_ours.close()

    took, answer = asyncio.run(scenario())
    assert proc.wait(timeout=1) == 0  # the page server had exited,
    assert _in_session(proc.pid), "its child is gone"  # its child holding the socket
    assert answer == b""  # criu's page socket ended: its dump fails at once
    assert took < BOUND


def test_a_page_server_gone_before_the_source_connects(
        creds: tuple[NodeCredentials, NodeCredentials],
        orphaning_page_server: tuple[subprocess.Popen[bytes], socket.socket]) -> None:
    a, b = creds
    proc, b_ours = orphaning_page_server
    b_ours.sendall(b"x" * (1 << 20))  # what it reads before it exits
    proc.wait(timeout=BOUND)

    async def scenario() -> str:
        server = pagerelay.RelayServer(server_context(b), "node_a", b_ours,
                                       lambda: asyncio.to_thread(proc.wait))
        await asyncio.sleep(0.1)  # its exit seen
        port = free_port(LOOPBACK)
        await server.start(LOOPBACK, port)
        _, a_ours = pagerelay.socket_pair()
        try:
            with pytest.raises(pagerelay.RelayError) as err:
                await asyncio.wait_for(pagerelay.send_pages(
                    LOOPBACK, port, client_context(a), a_ours, pagerelay.RelayStats()),
                    BOUND)
            return str(err.value)
        finally:
            await server.close()
            a_ours.close()

    assert "cannot reach" in asyncio.run(scenario())
