"""The PKI directory: files, permissions, refusals, and load_node's checks with their hints."""

from __future__ import annotations

import ipaddress
import shutil
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ferryman.errors import PkiError, UsageError
from ferryman.pki import certs, init_ca, issue_node, load_node
from tests.unit.pki.helpers import NOW, fixed_clock

IP = ipaddress.ip_address
CLOCK = fixed_clock()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_ca_writes_cert_and_private_key(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "pki"
    files = init_ca(directory, clock=CLOCK)
    assert files.cert == directory / "ca.pem"
    assert files.key == directory / "ca.key"
    assert _mode(directory) == 0o700
    assert _mode(files.key) == 0o600
    assert _mode(files.cert) == 0o644
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert cert.not_valid_after_utc == files.not_after
    assert sorted(p.name for p in directory.iterdir()) == ["ca.key", "ca.pem"]  # no temp files


def test_init_ca_tightens_an_existing_directory(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    init_ca(tmp_path, clock=CLOCK)
    assert _mode(tmp_path) == 0o700


def test_init_ca_refuses_to_replace_a_ca(pki_dir: Path) -> None:
    before = (pki_dir / "ca.pem").read_bytes()
    with pytest.raises(PkiError, match="a CA already exists") as info:
        init_ca(pki_dir, clock=CLOCK)
    assert "--force" in (info.value.hint or "")
    assert info.value.path == str(pki_dir / "ca.pem")
    assert (pki_dir / "ca.pem").read_bytes() == before


def test_init_ca_refuses_when_only_the_key_is_left(tmp_path: Path) -> None:
    init_ca(tmp_path, clock=CLOCK)
    (tmp_path / "ca.pem").unlink()
    with pytest.raises(PkiError):
        init_ca(tmp_path, clock=CLOCK)


def test_init_ca_force_replaces_the_ca(pki_dir: Path) -> None:
    before = (pki_dir / "ca.key").read_bytes()
    init_ca(pki_dir, clock=CLOCK, force=True)
    assert (pki_dir / "ca.key").read_bytes() != before
    assert _mode(pki_dir / "ca.key") == 0o600


def test_issue_node_writes_signed_cert_and_private_key(pki_dir: Path) -> None:
    files = issue_node(pki_dir, "node_a", [IP("192.0.2.7"), IP("2001:db8::7")],
                       dns=["a.lan"], clock=CLOCK)
    assert (files.cert, files.key) == (pki_dir / "node_a.pem", pki_dir / "node_a.key")
    assert _mode(files.key) == 0o600
    assert files.ips == (IP("192.0.2.7"), IP("2001:db8::7"), IP("127.0.0.1"))
    assert files.dns == ("node_a", "a.lan")
    assert not files.replaced
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca_cert)
    assert certs.common_name(cert) == "node_a"
    key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()


def test_reissue_replaces_the_node_files(pki_dir: Path) -> None:
    first = issue_node(pki_dir, "n1", [], clock=CLOCK)
    old_key = first.key.read_bytes()
    second = issue_node(pki_dir, "n1", [IP("10.0.0.1")], clock=CLOCK)
    assert second.replaced
    assert second.key.read_bytes() != old_key
    assert load_node(pki_dir, "n1", clock=CLOCK).cert == second.cert


@pytest.mark.parametrize("name", ["ca", "../evil", "a/b", ""])
def test_issue_node_refuses_bad_names(pki_dir: Path, name: str) -> None:
    with pytest.raises(UsageError):
        issue_node(pki_dir, name, [], clock=CLOCK)
    assert sorted(p.name for p in pki_dir.iterdir()) == ["ca.key", "ca.pem"]


def test_issue_node_needs_the_ca(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="missing") as info:
        issue_node(tmp_path, "n1", [], clock=CLOCK)
    assert "ferryman pki init" in (info.value.hint or "")


def test_issue_node_refuses_an_expired_ca(pki_dir: Path) -> None:
    late = fixed_clock(NOW + timedelta(days=21 * 365))
    with pytest.raises(PkiError, match="CA certificate expired"):
        issue_node(pki_dir, "n1", [], clock=late)


def test_issue_node_refuses_a_mismatched_ca_key(pki_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_ca(other, clock=CLOCK)
    shutil.copy(other / "ca.key", pki_dir / "ca.key")
    with pytest.raises(PkiError, match="does not belong"):
        issue_node(pki_dir, "n1", [], clock=CLOCK)


# -- load_node -----------------------------------------------------------------------------------


def test_load_node_returns_absolute_paths(
    pki_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    monkeypatch.chdir(pki_dir.parent)
    creds = load_node(Path(pki_dir.name), "n1", clock=CLOCK)
    assert creds.name == "n1"
    for path in (creds.ca, creds.cert, creds.key):
        assert path.is_absolute()
        assert path.is_file()
    assert (creds.ca.name, creds.cert.name, creds.key.name) == ("ca.pem", "n1.pem", "n1.key")


def test_load_node_needs_no_ca_key(pki_dir: Path) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    (pki_dir / "ca.key").unlink()
    load_node(pki_dir, "n1", clock=CLOCK)


@pytest.mark.parametrize("missing", ["n1.pem", "n1.key"])
def test_load_node_missing_files_say_how_to_issue(pki_dir: Path, missing: str) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    (pki_dir / missing).unlink()
    with pytest.raises(PkiError, match="missing") as info:
        load_node(pki_dir, "n1", clock=CLOCK)
    assert info.value.path == str(pki_dir / missing)
    assert f"ferryman pki issue n1 --pki {pki_dir}" in (info.value.hint or "")


def test_load_node_missing_ca(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="missing") as info:
        load_node(tmp_path, "n1", clock=CLOCK)
    assert info.value.path == str(tmp_path.resolve() / "ca.pem")
    assert "ca.pem" in (info.value.hint or "")


def test_load_node_unreadable_file(pki_dir: Path) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    (pki_dir / "n1.key").unlink()
    (pki_dir / "n1.key").mkdir()  # unreadable even for root
    with pytest.raises(PkiError, match="cannot read") as info:
        load_node(pki_dir, "n1", clock=CLOCK)
    assert "ferryman pki issue n1" in (info.value.hint or "")


@pytest.mark.parametrize(("file", "message"), [("n1.pem", "not a PEM certificate"),
                                               ("n1.key", "not a PEM private key")])
def test_load_node_garbage(pki_dir: Path, file: str, message: str) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    (pki_dir / file).write_bytes(b"hello\n")
    with pytest.raises(PkiError, match=message):
        load_node(pki_dir, "n1", clock=CLOCK)


def test_load_node_refuses_an_encrypted_key(pki_dir: Path) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    key = serialization.load_pem_private_key((pki_dir / "n1.key").read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (pki_dir / "n1.key").write_bytes(encrypted)
    with pytest.raises(PkiError, match="encrypted"):
        load_node(pki_dir, "n1", clock=CLOCK)


def test_load_node_refuses_a_cert_from_another_ca(pki_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_ca(other, clock=CLOCK)
    issue_node(other, "n1", [], clock=CLOCK)
    for name in ("n1.pem", "n1.key"):
        shutil.copy(other / name, pki_dir / name)
    with pytest.raises(PkiError, match="not signed by the CA") as info:
        load_node(pki_dir, "n1", clock=CLOCK)
    assert "ferryman pki issue n1" in (info.value.hint or "")


def test_load_node_refuses_a_mismatched_key(pki_dir: Path) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    issue_node(pki_dir, "n2", [], clock=CLOCK)
    shutil.copy(pki_dir / "n2.key", pki_dir / "n1.key")
    with pytest.raises(PkiError, match="does not match") as info:
        load_node(pki_dir, "n1", clock=CLOCK)
    assert info.value.path == str(pki_dir / "n1.key")


def test_load_node_refuses_another_nodes_cert(pki_dir: Path) -> None:
    issue_node(pki_dir, "n2", [], clock=CLOCK)
    for ext in ("pem", "key"):
        shutil.copy(pki_dir / f"n2.{ext}", pki_dir / f"n1.{ext}")
    with pytest.raises(PkiError, match="certificate is for 'n2'"):
        load_node(pki_dir, "n1", clock=CLOCK)


def test_load_node_refuses_an_expired_cert(pki_dir: Path) -> None:
    files = issue_node(pki_dir, "n1", [], clock=CLOCK)
    later = fixed_clock(files.not_after + timedelta(seconds=1))
    with pytest.raises(PkiError, match="expired") as info:
        load_node(pki_dir, "n1", clock=later)
    assert info.value.path == str(files.cert)
    assert "ferryman pki issue n1" in (info.value.hint or "")


def test_load_node_refuses_an_expired_ca(pki_dir: Path) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    with pytest.raises(PkiError, match="expired") as info:
        load_node(pki_dir, "n1", clock=fixed_clock(NOW + timedelta(days=21 * 365)))
    assert info.value.path == str(pki_dir / "ca.pem")


def test_load_node_refuses_a_cert_from_the_future(pki_dir: Path) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    with pytest.raises(PkiError, match="not valid before") as info:
        load_node(pki_dir, "n1", clock=fixed_clock(NOW - timedelta(days=1)))
    assert "clock" in (info.value.hint or "")


def test_load_node_validates_the_name(pki_dir: Path) -> None:
    with pytest.raises(UsageError):
        load_node(pki_dir, "../ca", clock=CLOCK)


def test_load_node_warns_about_an_exposed_key(
    pki_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    issue_node(pki_dir, "n1", [], clock=CLOCK)
    (pki_dir / "n1.key").chmod(0o644)
    load_node(pki_dir, "n1", clock=CLOCK)
    assert "chmod 600" in caplog.text
    assert "PRIVATE KEY" not in caplog.text
