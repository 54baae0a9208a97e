"""Mutual TLS over real sockets: asyncio agents-to-be, and CRIU's GnuTLS page server.

The asyncio tests need only loopback. The CRIU tests run ``criu page-server --tls`` with our
certificates and talk to it with our client context, proving that GnuTLS accepts the keys,
certificates and TLS 1.3 settings that ferryman produces.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import pytest

from ferryman.pki import NodeCredentials, init_ca, issue_node, load_node, system_clock
from ferryman.pki.tls import client_context, peer_name, server_context

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
OTHER_LOOPBACK = "127.0.0.2"  # also loopback on Linux (127.0.0.0/8), but not in default SANs
CRIU = Path("/usr/local/sbin/criu")
TIMEOUT = 10.0


@dataclass(frozen=True)
class Cluster:
    directory: Path
    a: NodeCredentials  # SANs: 127.0.0.1 only
    b: NodeCredentials  # SANs: 127.0.0.1 and 127.0.0.2
    stranger: NodeCredentials  # named like a, but signed by another CA


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    directory, other = tmp_path / "pki", tmp_path / "other-pki"
    init_ca(directory, clock=system_clock)
    init_ca(other, clock=system_clock)
    issue_node(directory, "node_a", [], clock=system_clock)
    issue_node(directory, "node_b", [ip_address(OTHER_LOOPBACK)], clock=system_clock)
    issue_node(other, "node_a", [], clock=system_clock)
    return Cluster(
        directory=directory,
        a=load_node(directory, "node_a"),
        b=load_node(directory, "node_b"),
        stranger=load_node(other, "node_a"),
    )


# -- asyncio server and client -------------------------------------------------------------------


@dataclass
class Served:
    port: int
    peers: list[str]  # peer_name() of every client whose handshake the server completed
    refusals: list[BaseException]  # the server's handshake failures


@contextlib.asynccontextmanager
async def serving(creds: NodeCredentials, host: str = LOOPBACK) -> AsyncIterator[Served]:
    """A TLS server on an ephemeral port that greets each client with its own peer name.

    asyncio reports failed server handshakes only in debug mode, to the loop's exception
    handler: both are switched on here so tests can see why a client was refused.
    """
    served = Served(port=0, peers=[], refusals=[])
    loop = asyncio.get_running_loop()
    loop.set_debug(True)

    def record(_loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            served.refusals.append(exc)
        else:
            _loop.default_exception_handler(context)

    loop.set_exception_handler(record)

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name = peer_name(writer.get_extra_info("ssl_object"))
        served.peers.append(name)
        writer.write(f"hello {name} via {writer.get_extra_info('ssl_object').version()}\n"
                     .encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(greet, host, 0, ssl=server_context(creds))
    served.port = server.sockets[0].getsockname()[1]
    async with server:
        yield served


@dataclass(frozen=True)
class Dialled:
    version: str | None
    server_name: str
    greeting: bytes


async def dial(ctx: ssl.SSLContext, host: str, port: int) -> Dialled:
    """Connect, handshake, read the greeting line (b'' when the server hung up)."""
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
        try:
            obj = writer.get_extra_info("ssl_object")
            return Dialled(obj.version(), peer_name(obj), await reader.readline())
        finally:
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                await writer.wait_closed()


def test_mutual_tls13_handshake_names_both_peers(cluster: Cluster) -> None:
    async def scenario() -> tuple[Dialled, list[str]]:
        async with serving(cluster.a) as served:
            dialled = await dial(client_context(cluster.b), LOOPBACK, served.port)
            return dialled, served.peers

    dialled, peers = asyncio.run(scenario())
    assert dialled.version == "TLSv1.3"
    assert dialled.server_name == "node_a"
    assert dialled.greeting == b"hello node_b via TLSv1.3\n"
    assert peers == ["node_b"]


def _refused_by_server(cluster: Cluster, ctx: ssl.SSLContext) -> BaseException:
    """Dial cluster.a's server with ``ctx``, expect a refusal; return the server's reason.

    In TLS 1.3 the client finishes its handshake before the server checks the client's
    certificate, so the client learns of the refusal only on its first read: asyncio's server
    drops the connection (EOF) rather than sending the alert, either is accepted here.
    """
    async def scenario() -> tuple[BaseException | bytes, Served]:
        async with serving(cluster.a) as served:
            try:
                outcome: BaseException | bytes = (
                    await dial(ctx, LOOPBACK, served.port)
                ).greeting
            except (ssl.SSLError, ConnectionError) as exc:
                outcome = exc
            for _ in range(100):  # the refusal is recorded by a callback
                if served.refusals:
                    break
                await asyncio.sleep(0.01)
            return outcome, served

    outcome, served = asyncio.run(scenario())
    assert outcome == b"" or isinstance(outcome, ssl.SSLError | ConnectionError), outcome
    assert served.peers == []
    assert len(served.refusals) == 1, served.refusals
    return served.refusals[0]


def stranger_context(cluster: Cluster) -> ssl.SSLContext:
    """The stranger's client context, trusting our CA too: only the server's check is left."""
    ctx = client_context(cluster.stranger)
    ctx.load_verify_locations(cafile=str(cluster.a.ca))
    return ctx


def test_client_from_another_ca_is_refused(cluster: Cluster) -> None:
    reason = _refused_by_server(cluster, stranger_context(cluster))
    assert isinstance(reason, ssl.SSLCertVerificationError)


def test_client_without_certificate_is_refused(cluster: Cluster) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts our CA, presents nothing
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=str(cluster.a.ca))
    reason = _refused_by_server(cluster, ctx)
    assert isinstance(reason, ssl.SSLError)
    assert reason.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


def test_client_refuses_server_cert_without_the_dialled_ip(cluster: Cluster) -> None:
    """node_a's certificate lacks 127.0.0.2; node_b's has it (the positive control)."""
    async def scenario(server_creds: NodeCredentials) -> Dialled:
        async with serving(server_creds, OTHER_LOOPBACK) as served:
            return await dial(client_context(cluster.b), OTHER_LOOPBACK, served.port)

    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        asyncio.run(scenario(cluster.a))
    assert asyncio.run(scenario(cluster.b)).server_name == "node_b"


def test_client_refuses_server_from_another_ca(cluster: Cluster) -> None:
    async def scenario() -> Dialled:
        async with serving(cluster.stranger) as served:
            return await dial(client_context(cluster.b), LOOPBACK, served.port)

    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        asyncio.run(scenario())


# -- CRIU's GnuTLS -------------------------------------------------------------------------------

PS_IOV_CLOSE = 0x1023  # criu/page-xfer.c
PS_IOV = struct.Struct("=I4xQQQ")  # struct page_server_iov {u32 cmd; u64 nr_pages, vaddr, dst_id}

needs_criu = pytest.mark.skipif(
    not CRIU.exists() or os.geteuid() != 0,
    reason=f"needs root and CRIU at {CRIU} (install with 'sudo scripts/install-criu.sh')",
)


@dataclass
class PageServer:
    address: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def wait(self) -> int:
        return self.proc.wait(timeout=TIMEOUT)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def page_server(
    creds: NodeCredentials, workdir: Path, *, address: str = LOOPBACK, extra: tuple[str, ...] = ()
) -> Iterator[PageServer]:
    """``criu page-server --tls`` with ``creds``; yields once it listens; always killed."""
    workdir.mkdir()
    port = _free_port(address)
    ready_r, ready_w = os.pipe()
    cmd = [
        str(CRIU), "page-server", "--tls",
        "--tls-cacert", str(creds.ca), "--tls-cert", str(creds.cert), "--tls-key", str(creds.key),
        "--address", address, "--port", str(port), *extra,
        "-D", str(workdir), "-o", "page-server.log", "-v4", "--status-fd", str(ready_w),
    ]
    proc = subprocess.Popen(cmd, pass_fds=(ready_w,), stdin=subprocess.DEVNULL)
    os.close(ready_w)
    server = PageServer(address, port, proc, workdir / "page-server.log")
    try:
        readable, _, _ = select.select([ready_r], [], [], TIMEOUT)
        if not readable or os.read(ready_r, 1) != b"\0":
            pytest.fail(f"criu page-server did not start:\n{server.log_text()}")
        yield server
    finally:
        os.close(ready_r)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def close_page_server(
    creds: NodeCredentials, server: PageServer, ctx: ssl.SSLContext | None = None
) -> tuple[str, str, bytes]:
    """Handshake with ``creds``, send PS_IOV_CLOSE; return (TLS version, peer, CRIU's answer).

    CRIU answers a 4-byte status 0 once it has verified our certificate and read the command
    through TLS; after a refusal the read gives b'' or a TLS error (raised).
    """
    ctx = ctx or client_context(creds)
    with socket.create_connection((server.address, server.port), timeout=TIMEOUT) as raw, \
            ctx.wrap_socket(raw, server_hostname=server.address) as tls:
        version, name = tls.version() or "", peer_name(tls)
        tls.sendall(PS_IOV.pack(PS_IOV_CLOSE, 0, 0, 0))
        answer = tls.recv(4)
        if answer:
            tls.unwrap()  # close_notify: CRIU waits for our side to close
        return version, name, answer


@needs_criu
def test_criu_page_server_accepts_our_certificates(cluster: Cluster, tmp_path: Path) -> None:
    with page_server(cluster.b, tmp_path / "ps") as server:
        version, name, answer = close_page_server(cluster.a, server)
        assert (version, name) == ("TLSv1.3", "node_b")
        assert answer == b"\0\0\0\0", server.log_text()
        assert server.wait() == 0, server.log_text()
        assert "TLS handshake completed" in server.log_text()


@needs_criu
def test_criu_page_server_refuses_a_client_from_another_ca(
    cluster: Cluster, tmp_path: Path
) -> None:
    with page_server(cluster.b, tmp_path / "ps") as server:
        try:
            answer = close_page_server(cluster.stranger, server, stranger_context(cluster))[2]
        except (ssl.SSLError, ConnectionError):
            answer = b""
        assert answer == b""
        assert server.wait() != 0
        assert "The certificate is NOT trusted" in server.log_text()


@needs_criu
def test_criu_page_server_checks_the_client_against_its_own_address(
    cluster: Cluster, tmp_path: Path
) -> None:
    """CRIU verifies the *client* certificate against the page server's own --address.

    node_a's certificate does not list 127.0.0.2, so a page server at 127.0.0.2 refuses it
    even though it is signed by the right CA; --tls-no-cn-verify lifts only that name check.
    ferryman's page servers must therefore run with --tls-no-cn-verify (the CA check stays).
    """
    with page_server(cluster.b, tmp_path / "strict", address=OTHER_LOOPBACK) as server:
        try:
            answer = close_page_server(cluster.a, server)[2]
        except (ssl.SSLError, ConnectionError):
            answer = b""
        assert answer == b""
        assert server.wait() != 0
        assert "does not match the expected" in server.log_text()

    with page_server(cluster.b, tmp_path / "lenient", address=OTHER_LOOPBACK,
                     extra=("--tls-no-cn-verify",)) as server:
        assert close_page_server(cluster.a, server)[2] == b"\0\0\0\0", server.log_text()
        assert server.wait() == 0
