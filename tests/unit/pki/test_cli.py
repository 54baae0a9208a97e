"""``ferryman pki init`` and ``ferryman pki issue`` through their own parser."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from ferryman.cli import pki as pki_cli
from ferryman.errors import PkiError, UsageError
from ferryman.pki import load_node


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ferryman")
    pki_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


def test_init_then_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "pki"
    assert run(["pki", "init", str(directory)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {directory / 'ca.pem'}" in out
    assert f"wrote {directory / 'ca.key'}" in out
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    assert run(["pki", "issue", "node_a", "--pki", str(directory), "--ip", "192.0.2.1",
                "--ip", "2001:db8::1", "--dns", "a.lan"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {directory / 'node_a.pem'}" in out
    assert "IP:192.0.2.1, IP:2001:db8::1, IP:127.0.0.1, DNS:node_a, DNS:a.lan" in out
    assert load_node(directory, "node_a").name == "node_a"

    assert run(["pki", "issue", "node_a", "--pki", str(directory)]) == 0
    assert "replaced" in capsys.readouterr().out


def test_init_refuses_an_existing_ca_without_force(tmp_path: Path) -> None:
    run(["pki", "init", str(tmp_path)])
    with pytest.raises(PkiError, match="already exists"):
        run(["pki", "init", str(tmp_path)])
    assert run(["pki", "init", str(tmp_path), "--force"]) == 0


@pytest.mark.parametrize("ip", ["1.2.3", "10.0.0.0/8", "localhost", ""])
def test_issue_refuses_bad_ips(tmp_path: Path, ip: str) -> None:
    run(["pki", "init", str(tmp_path)])
    with pytest.raises(UsageError, match="is not an IP address"):
        run(["pki", "issue", "n1", "--pki", str(tmp_path), "--ip", ip])
    assert not (tmp_path / "n1.pem").exists()


def test_issue_refuses_bad_names(tmp_path: Path) -> None:
    run(["pki", "init", str(tmp_path)])
    with pytest.raises(UsageError, match="invalid node name"):
        run(["pki", "issue", "a/b", "--pki", str(tmp_path)])
    with pytest.raises(UsageError, match="invalid DNS name"):
        run(["pki", "issue", "n1", "--pki", str(tmp_path), "--dns", "a b"])


def test_issue_requires_the_pki_directory() -> None:
    with pytest.raises(SystemExit):
        run(["pki", "issue", "n1"])
