"""The PKI directory on disk: create the CA, issue node certificates, load a node's credentials.

Layout of a PKI directory (mode 0700)::

    ca.pem        the cluster CA certificate (every node needs it)
    ca.key        the CA private key (0600; stays where 'ferryman pki init' ran)
    NAME.pem      node NAME's certificate, signed by the CA
    NAME.key      node NAME's private key (0600)

A node needs ``ca.pem``, ``NAME.pem`` and ``NAME.key``. Files are replaced atomically. OS and
``cryptography`` errors are translated to :class:`PkiError` here, with the path and a hint.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ferryman.errors import PkiError
from ferryman.pki import certs
from ferryman.pki.certs import CA_CERT_FILE, CA_KEY_FILE, Clock, IpAddress

logger = logging.getLogger(__name__)

_DIR_MODE = 0o700
_KEY_MODE = 0o600
_CERT_MODE = 0o644


@dataclass(frozen=True, slots=True)
class CaFiles:
    """What :func:`init_ca` wrote."""

    directory: Path
    cert: Path
    key: Path
    not_after: datetime


@dataclass(frozen=True, slots=True)
class NodeFiles:
    """What :func:`issue_node` wrote."""

    name: str
    cert: Path
    key: Path
    ips: tuple[IpAddress, ...]
    dns: tuple[str, ...]
    not_after: datetime
    replaced: bool  # an earlier certificate for this node was overwritten


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    """A node's verified TLS material. Paths are absolute (CRIU requires it)."""

    name: str
    ca: Path
    cert: Path
    key: Path
    not_after: datetime


def _issue_hint(name: str, directory: Path) -> str:
    return f"run 'ferryman pki issue {name} --pki {directory}' where the CA key is"


def _init_hint(directory: Path) -> str:
    return f"run 'ferryman pki init {directory}' to create the cluster CA"


def init_ca(directory: Path, *, clock: Clock, force: bool = False) -> CaFiles:
    """Create the cluster CA in ``directory`` (created, mode 0700).

    Refuses to replace an existing CA unless ``force``: every node certificate signed by the
    old CA stops working.
    """
    directory = directory.absolute()
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not force:
        for path in (cert_path, key_path):
            if path.exists():
                raise PkiError(
                    str(path),
                    "a CA already exists here",
                    hint="pass --force to replace it (then reissue every node certificate)",
                )
    _make_private_dir(directory)
    now = certs.now_utc(clock)
    key = certs.new_private_key()
    cert = certs.build_ca_certificate(key, now=now)
    _write_atomic(key_path, certs.private_key_pem(key), _KEY_MODE)
    _write_atomic(cert_path, certs.certificate_pem(cert), _CERT_MODE)
    logger.info("created CA %s (valid until %s)", cert_path, cert.not_valid_after_utc)
    return CaFiles(directory, cert_path, key_path, cert.not_valid_after_utc)


def issue_node(
    directory: Path,
    name: str,
    ips: Sequence[IpAddress],
    *,
    dns: Sequence[str] = (),
    clock: Clock,
) -> NodeFiles:
    """Issue (or reissue) the certificate of node ``name``, signed by the CA in ``directory``.

    SANs: ``ips`` plus 127.0.0.1, DNS ``name`` plus ``dns``. Raises UsageError for a bad name
    or DNS name, PkiError when the CA is missing, unreadable or expired.
    """
    directory = directory.absolute()
    certs.validate_node_name(name)
    ca_cert = _read_cert(directory / CA_CERT_FILE, _init_hint(directory))
    ca_key = _read_key(directory / CA_KEY_FILE, _init_hint(directory))
    if ca_key.public_key().public_numbers() != _ec_public(ca_cert, directory / CA_CERT_FILE):
        raise PkiError(
            str(directory / CA_KEY_FILE),
            "the CA key does not belong to the CA certificate",
            hint=f"restore the matching pair or {_init_hint(directory)} with --force",
        )
    now = certs.now_utc(clock)
    if ca_cert.not_valid_after_utc <= now:
        raise PkiError(
            str(directory / CA_CERT_FILE),
            f"the CA certificate expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}",
            hint=f"{_init_hint(directory)} with --force and reissue every node",
        )
    node_key = certs.new_private_key()
    cert = certs.build_node_certificate(
        ca_cert=ca_cert, ca_key=ca_key, node_key=node_key, name=name, ips=ips, dns=dns, now=now
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    replaced = cert_path.exists() or key_path.exists()
    _write_atomic(key_path, certs.private_key_pem(node_key), _KEY_MODE)
    _write_atomic(cert_path, certs.certificate_pem(cert), _CERT_MODE)
    logger.info("issued %s for node %s (valid until %s)", cert_path, name,
                cert.not_valid_after_utc)
    return NodeFiles(
        name=name,
        cert=cert_path,
        key=key_path,
        ips=certs.san_ips(cert),
        dns=certs.san_dns_names(cert),
        not_after=cert.not_valid_after_utc,
        replaced=replaced,
    )


def load_node(directory: Path, name: str, *, clock: Clock = certs.system_clock) -> NodeCredentials:
    """Check node ``name``'s files in ``directory`` and return their absolute paths.

    Checks: all three files readable and well-formed, the certificate signed by ``ca.pem``,
    its CN equal to ``name``, the key matching it, both certificates valid at ``clock()``.
    """
    certs.validate_node_name(name)
    directory = directory.resolve()
    ca_path = directory / CA_CERT_FILE
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    hint = _issue_hint(name, directory)
    ca_cert = _read_cert(
        ca_path, f"copy ca.pem from the CA's PKI directory, or {_init_hint(directory)}"
    )
    cert = _read_cert(cert_path, hint)
    key = _read_key(key_path, hint)
    _warn_if_exposed(key_path)

    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PkiError(str(cert_path), f"not signed by the CA in {ca_path}", hint=hint) from exc
    if certs.common_name(cert) != name:
        raise PkiError(
            str(cert_path),
            f"certificate is for {certs.common_name(cert)!r}, not {name!r}",
            hint=hint,
        )
    if key.public_key().public_numbers() != _ec_public(cert, cert_path):
        raise PkiError(str(key_path), f"private key does not match {cert_path}", hint=hint)

    now = certs.now_utc(clock)
    for path, c, fix in (
        (ca_path, ca_cert, f"{_init_hint(directory)} with --force and reissue every node"),
        (cert_path, cert, hint),
    ):
        if now < c.not_valid_before_utc:
            raise PkiError(
                str(path),
                f"certificate is not valid before {c.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                hint="check this node's clock",
            )
        if now >= c.not_valid_after_utc:
            raise PkiError(
                str(path), f"certificate expired on {c.not_valid_after_utc:%Y-%m-%d}", hint=fix
            )
    return NodeCredentials(
        name=name,
        ca=ca_path,
        cert=cert_path,
        key=key_path,
        not_after=min(cert.not_valid_after_utc, ca_cert.not_valid_after_utc),
    )


# -- I/O helpers -------------------------------------------------------------------------------


def _make_private_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        directory.chmod(_DIR_MODE)
    except OSError as exc:
        raise PkiError(str(directory), f"cannot create directory: {exc.strerror}") from exc


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename.

    The temporary file is created 0600 (mkstemp), so a key is never readable by others.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise PkiError(str(path), f"cannot write: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise PkiError(str(path), f"cannot write: {exc.strerror}") from exc


def _read_bytes(path: Path, hint: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise PkiError(str(path), "missing", hint=hint) from exc
    except OSError as exc:
        raise PkiError(str(path), f"cannot read: {exc.strerror}", hint=hint) from exc


def _read_cert(path: Path, hint: str) -> x509.Certificate:
    data = _read_bytes(path, hint)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(str(path), "not a PEM certificate", hint=hint) from exc


def _read_key(path: Path, hint: str) -> ec.EllipticCurvePrivateKey:
    data = _read_bytes(path, hint)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # the key is encrypted
        raise PkiError(str(path), "private key is encrypted", hint=hint) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise PkiError(str(path), "not a PEM private key", hint=hint) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(str(path), "not an ECDSA private key", hint=hint)
    return key


def _ec_public(cert: x509.Certificate, path: Path) -> ec.EllipticCurvePublicNumbers:
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise PkiError(str(path), "certificate does not hold an ECDSA key")
    return public.public_numbers()


def _warn_if_exposed(key_path: Path) -> None:
    try:
        mode = key_path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("%s is accessible by group/others (mode %o); chmod 600 it",
                       key_path, stat.S_IMODE(mode))
