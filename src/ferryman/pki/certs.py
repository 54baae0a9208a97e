"""Pure certificate logic: node-name rules, key generation, CA and node certificate builders.

Nothing here touches files. Keys are ECDSA P-256 (accepted by Python's ``ssl``/OpenSSL and by
CRIU's GnuTLS), signatures SHA-256, keys serialised as unencrypted PKCS#8 PEM.

Node certificates carry ``serverAuth`` and ``clientAuth``: every node is both a TLS server (its
agent, its page server) and a client (the controller, the dumping CRIU). Peers are addressed by
IP and both Python and CRIU check the IP against the certificate, so node certificates list
their IPs as IP SANs (always including 127.0.0.1 for same-host runs and tests).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ferryman.errors import UsageError

Clock = Callable[[], datetime]
"""Returns the current time as a timezone-aware datetime."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CA_COMMON_NAME = "ferryman cluster CA"

CA_VALIDITY = timedelta(days=20 * 365)
NODE_VALIDITY = timedelta(days=10 * 365)
# Certificates start slightly in the past so a node whose clock lags still accepts them.
BACKDATE = timedelta(hours=1)

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")

_NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DNS_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
_RESERVED_NAMES = frozenset({"ca"})  # NAME.pem/NAME.key would overwrite the CA's files


def system_clock() -> datetime:
    """The real clock, for the CLI layer to inject."""
    return datetime.now(UTC)


def now_utc(clock: Clock) -> datetime:
    """Call ``clock`` and insist on an aware datetime (certificate times are UTC)."""
    now = clock()
    if now.tzinfo is None:
        raise ValueError("the clock must return a timezone-aware datetime")
    return now.astimezone(UTC)


def validate_node_name(name: str) -> str:
    """Return ``name`` if it is a valid node name, else raise :class:`UsageError`.

    Node names are ``[A-Za-z0-9_.-]{1,64}``; they name files (``NAME.pem``) and are the
    certificate's CN and DNS SAN, so names starting with a dot and the reserved name ``ca``
    are refused too.
    """
    if not _NODE_NAME.fullmatch(name):
        raise UsageError(
            f"invalid node name {name!r}",
            hint="use 1-64 characters from A-Z a-z 0-9 _ . -",
        )
    if name.startswith("."):
        raise UsageError(f"invalid node name {name!r}", hint="a node name may not start with '.'")
    if name.lower() in _RESERVED_NAMES:
        raise UsageError(f"invalid node name {name!r}", hint="'ca' is reserved for the CA files")
    return name


def validate_dns_name(name: str) -> str:
    """Return ``name`` if it is a plausible DNS name (ASCII labels), else raise UsageError."""
    labels = name.split(".")
    if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise UsageError(
            f"invalid DNS name {name!r}",
            hint="use dot-separated labels of A-Z a-z 0-9 _ - (ASCII; punycode for IDNs)",
        )
    return name


def subject_alt_names(
    name: str, ips: Iterable[IpAddress], dns: Iterable[str]
) -> tuple[tuple[IpAddress, ...], tuple[str, ...]]:
    """The IP and DNS SANs for node ``name``: the IPs plus 127.0.0.1, ``name`` plus ``dns``.

    Order is kept (first occurrence wins) and duplicates are dropped.
    """
    ip_list: list[IpAddress] = []
    for ip in (*ips, LOOPBACK):
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise TypeError(f"not an IP address: {ip!r}")
        if ip not in ip_list:
            ip_list.append(ip)
    # The node name is already restricted to [A-Za-z0-9_.-]; extra names are checked here.
    extra = [validate_dns_name(d) for d in dns]
    dns_list: list[str] = []
    for dns_name in (validate_node_name(name), *extra):
        if dns_name.lower() not in (d.lower() for d in dns_list):
            dns_list.append(dns_name)
    return tuple(ip_list), tuple(dns_list)


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def build_ca_certificate(key: ec.EllipticCurvePrivateKey, *, now: datetime) -> x509.Certificate:
    """A self-signed CA certificate that may sign node certificates only (path length 0)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def build_node_certificate(
    *,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    node_key: ec.EllipticCurvePrivateKey,
    name: str,
    ips: Sequence[IpAddress],
    dns: Sequence[str] = (),
    now: datetime,
) -> x509.Certificate:
    """A node certificate: CN=name, SANs from :func:`subject_alt_names`, server+client auth.

    Valid for :data:`NODE_VALIDITY`, but never beyond the CA's own expiry.
    """
    ip_sans, dns_sans = subject_alt_names(name, ips, dns)
    not_after = min(now + NODE_VALIDITY, ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise ValueError("the CA certificate has expired")
    public = node_key.public_key()
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_sans]
    sans += [x509.IPAddress(ip) for ip in ip_sans]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def common_name(cert: x509.Certificate) -> str | None:
    """The subject CN of ``cert``, or None when it has none."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def san_ips(cert: x509.Certificate) -> tuple[IpAddress, ...]:
    """The IPv4/IPv6 addresses among ``cert``'s subject alternative names."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(
        ip
        for ip in ext.value.get_values_for_type(x509.IPAddress)
        if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
    )


def san_dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(ext.value.get_values_for_type(x509.DNSName))
