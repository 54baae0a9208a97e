"""TLS contexts, checked with in-memory handshakes (ssl.MemoryBIO: no sockets)."""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import pytest

from ferryman.errors import PeerRejected, PkiError
from ferryman.pki import init_ca, system_clock
from ferryman.pki.tls import client_context, peer_name, server_context
from tests.unit.pki.helpers import live_node


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO) -> None:
    data = src.read()
    if data:
        dst.write(data)


def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a full handshake between two in-memory endpoints; return (server, client)."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, obj in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        _pump(c_out, s_in)
        _pump(s_out, c_in)
        if all(done.values()):
            # TLS 1.3: the server sees the client certificate only with the client's Finished.
            return server, client
    raise AssertionError("handshake did not finish")


def test_contexts_are_tls13_only_with_mutual_auth(live_pki: Path) -> None:
    creds = live_node(live_pki, "n1")
    server, client = server_context(creds), client_context(creds)
    for ctx in (server, client):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname


def test_handshake_names_both_peers(live_pki: Path) -> None:
    a, b = live_node(live_pki, "node_a"), live_node(live_pki, "node_b")
    server, client = handshake(server_context(a), client_context(b), "127.0.0.1")
    assert server.version() == client.version() == "TLSv1.3"
    assert peer_name(server) == "node_b"
    assert peer_name(client) == "node_a"


def test_client_checks_the_server_ip(live_pki: Path) -> None:
    a, b = live_node(live_pki, "node_a"), live_node(live_pki, "node_b")
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        handshake(server_context(a), client_context(b), "10.9.9.9")


def test_server_refuses_a_client_from_another_ca(live_pki: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_ca(other, clock=system_clock)
    stranger = live_node(other, "node_a")
    with pytest.raises(ssl.SSLError, match="certificate verify failed"):
        handshake(server_context(live_node(live_pki, "n1")), client_context(stranger),
                  "127.0.0.1")


def test_bad_files_become_pki_errors(live_pki: Path) -> None:
    creds = live_node(live_pki, "n1")
    (live_pki / "junk.pem").write_text("junk\n")
    with pytest.raises(PkiError, match="refused the CA"):
        server_context(replace(creds, ca=live_pki / "junk.pem"))
    with pytest.raises(PkiError, match="refused the certificate or key"):
        client_context(replace(creds, key=live_pki / "junk.pem"))


class _NoCert:
    def getpeercert(self) -> dict[str, object]:
        return {}


class _NoCn:
    def getpeercert(self) -> dict[str, object]:
        return {"subject": ((("organizationName", "x"),),)}


def test_peer_name_without_certificate_or_cn() -> None:
    with pytest.raises(PeerRejected, match="no certificate"):
        peer_name(_NoCert())  # type: ignore[arg-type]
    with pytest.raises(PeerRejected, match="no common name"):
        peer_name(_NoCn())  # type: ignore[arg-type]
