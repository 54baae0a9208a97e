"""TLS contexts for agents and controllers: TLS 1.3 only, mutual authentication by the cluster CA.

Servers require a client certificate signed by the cluster CA. Clients present their node
certificate and check the server against the CA and the address they dialled; servers are
addressed by IP, so pass ``server_hostname=<the IP>`` and the certificate's IP SANs are checked.
Who the peer is comes from its certificate's CN: :func:`peer_name`.
"""

from __future__ import annotations

import ssl

from ferryman.errors import PeerRejected, PkiError
from ferryman.pki.store import NodeCredentials


def server_context(creds: NodeCredentials) -> ssl.SSLContext:
    """A server context: TLS 1.3, our node certificate, client certificates required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    _configure(ctx, creds)
    return ctx


def client_context(creds: NodeCredentials) -> ssl.SSLContext:
    """A client context: TLS 1.3, presents our node certificate, verifies server and address."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    _configure(ctx, creds)
    return ctx


def _configure(ctx: ssl.SSLContext, creds: NodeCredentials) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    # RFC 5280 strictness: catches malformed certificates here rather than in CRIU's GnuTLS.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        ctx.load_verify_locations(cafile=str(creds.ca))
    except (ssl.SSLError, OSError) as exc:
        raise PkiError(str(creds.ca), f"TLS library refused the CA certificate: {exc}") from exc
    try:
        ctx.load_cert_chain(certfile=str(creds.cert), keyfile=str(creds.key))
    except (ssl.SSLError, OSError) as exc:
        raise PkiError(
            str(creds.cert), f"TLS library refused the certificate or key: {exc}"
        ) from exc


def peer_name(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str:
    """The CN of the verified peer certificate (the peer's node name).

    ``ssl_object`` is what ``writer.get_extra_info("ssl_object")`` returns after the handshake.
    Raises :class:`PeerRejected` when there is no peer certificate or it has no CN.
    """
    cert = ssl_object.getpeercert()
    if not cert:
        raise PeerRejected("<unknown>", "the peer presented no certificate")
    subject = cert.get("subject", ())
    # A tuple of RDNs, each a tuple of (attribute, value) pairs; typeshed types it loosely.
    for rdn in subject if isinstance(subject, tuple) else ():
        for pair in rdn if isinstance(rdn, tuple) else ():
            if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == "commonName":
                return str(pair[1])
    raise PeerRejected("<unknown>", "the peer certificate has no common name")
