"""Pure certificate logic: names, SANs, and what the built certificates contain."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from ferryman.errors import UsageError
from ferryman.pki import certs
from tests.unit.pki.helpers import NOW

IP = ipaddress.ip_address


@pytest.mark.parametrize("name", ["a", "node-1", "node_a", "A.b-c_9", "x" * 64, "n..", "-n"])
def test_valid_node_names(name: str) -> None:
    assert certs.validate_node_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 65, "a/b", "../x", "a b", "é", "a:b", "node\n", ".hidden", "..", "ca", "CA"]
)
def test_invalid_node_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid node name"):
        certs.validate_node_name(name)


@pytest.mark.parametrize("name", ["a.example", "node-1.lan", "x", "_srv.example"])
def test_valid_dns_names(name: str) -> None:
    assert certs.validate_dns_name(name) == name


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "a b", "*.example", "x" * 64, "é.de"])
def test_invalid_dns_names(name: str) -> None:
    with pytest.raises(UsageError, match="invalid DNS name"):
        certs.validate_dns_name(name)


def test_sans_always_include_loopback_and_the_node_name() -> None:
    ips, dns = certs.subject_alt_names("n1", [], [])
    assert ips == (IP("127.0.0.1"),)
    assert dns == ("n1",)


def test_sans_keep_order_and_drop_duplicates() -> None:
    ips, dns = certs.subject_alt_names(
        "n1",
        [IP("10.0.0.2"), IP("127.0.0.1"), IP("fd00::2"), IP("10.0.0.2")],
        ["n1.lan", "N1", "n1.lan"],
    )
    assert ips == (IP("10.0.0.2"), IP("127.0.0.1"), IP("fd00::2"))
    assert dns == ("n1", "n1.lan")


def test_sans_refuse_strings_for_ips() -> None:
    with pytest.raises(TypeError):
        certs.subject_alt_names("n1", ["10.0.0.1"], [])  # type: ignore[list-item]


def test_sans_validate_extra_dns_names() -> None:
    with pytest.raises(UsageError):
        certs.subject_alt_names("n1", [], ["bad name"])


def test_clock_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        certs.now_utc(lambda: NOW.replace(tzinfo=None))


Ca = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@pytest.fixture(scope="module")
def ca() -> Ca:
    key = certs.new_private_key()
    return certs.build_ca_certificate(key, now=NOW), key


def _node(ca: Ca, *, now: datetime = NOW, dns: tuple[str, ...] = ()) -> x509.Certificate:
    ca_cert, ca_key = ca
    return certs.build_node_certificate(
        ca_cert=ca_cert,
        ca_key=ca_key,
        node_key=certs.new_private_key(),
        name="node_a",
        ips=[IP("10.1.2.3")],
        dns=dns,
        now=now,
    )


def test_ca_certificate_is_a_p256_ca(ca: Ca) -> None:
    cert = ca[0]
    assert cert.subject == cert.issuer
    assert certs.common_name(cert) == certs.CA_COMMON_NAME
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    assert bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign
    assert ku.crl_sign
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc


def test_node_certificate_names_and_usages(ca: Ca) -> None:
    cert = _node(ca, dns=("a.lan",))
    assert certs.common_name(cert) == "node_a"
    assert cert.issuer == ca[0].subject
    assert certs.san_ips(cert) == (IP("10.1.2.3"), IP("127.0.0.1"))
    assert certs.san_dns_names(cert) == ("node_a", "a.lan")
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca[0])


def test_node_certificate_lives_about_ten_years(ca: Ca) -> None:
    cert = _node(ca)
    lifetime = cert.not_valid_after_utc - NOW
    assert timedelta(days=3640) < lifetime <= timedelta(days=3660)
    assert cert.not_valid_before_utc <= NOW - timedelta(minutes=30)  # tolerates clock lag


def test_node_certificate_never_outlives_the_ca(ca: Ca) -> None:
    late = ca[0].not_valid_after_utc - timedelta(days=30)
    cert = _node(ca, now=late)
    assert cert.not_valid_after_utc == ca[0].not_valid_after_utc


def test_node_certificate_refused_after_ca_expiry(ca: Ca) -> None:
    with pytest.raises(ValueError, match="expired"):
        _node(ca, now=ca[0].not_valid_after_utc + timedelta(days=1))


def test_node_certificate_passes_an_independent_rfc5280_verifier(
    ca: Ca,
) -> None:
    """cryptography's own path validator (web-PKI profile) accepts it as server and client."""
    cert = _node(ca, dns=("a.lan",))
    builder = verification.PolicyBuilder().store(verification.Store([ca[0]])).time(NOW)
    builder.build_server_verifier(x509.IPAddress(IP("10.1.2.3"))).verify(cert, [])
    builder.build_server_verifier(x509.DNSName("a.lan")).verify(cert, [])
    client = builder.build_client_verifier().verify(cert, [])
    assert x509.IPAddress(IP("127.0.0.1")) in (client.subjects or [])
    with pytest.raises(verification.VerificationError):
        builder.build_server_verifier(x509.IPAddress(IP("10.9.9.9"))).verify(cert, [])


def test_private_key_pem_is_unencrypted_pkcs8() -> None:
    pem = certs.private_key_pem(certs.new_private_key())
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
