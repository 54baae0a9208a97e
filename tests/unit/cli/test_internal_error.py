"""A bug's exception ends the command with one line and exit 70, the traceback in a file."""

from __future__ import annotations

import argparse
import struct
import tempfile
from pathlib import Path

import pytest

from ferryman.cli import main as cli_main


def _crashing_parser(only: str | None = None) -> argparse.ArgumentParser:
    del only
    parser = argparse.ArgumentParser(prog="ferryman")
    parser.add_argument("-v", "--verbose", action="count", default=0)

    def run(args: argparse.Namespace) -> int:
        del args
        struct.unpack("i", b"")  # what pycriu raised on a stats image still being written
        return 0

    parser.set_defaults(run=run)
    return parser


def test_an_unexpected_exception_is_one_line_and_exit_70(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli_main, "build_parser", _crashing_parser)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert cli_main.main([]) == cli_main.INTERNAL_ERROR == 70
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ferryman: error: internal error: struct.error: unpack requires")
    kept = list(tmp_path.glob("ferryman-crash-*.txt"))
    assert len(kept) == 1
    assert str(kept[0]) in lines[0]
    assert "struct.unpack" in kept[0].read_text()
