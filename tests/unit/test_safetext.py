"""Peer text on a terminal and in a log: escaped, never obeyed (issue 16 findings 12, 13)."""

from __future__ import annotations

import io
import logging

import pytest

from ferryman.errors import RemoteError
from ferryman.safetext import PrintableFormatter, printable

EVIL = ("\r\x1b[2K\x1b[2J\x1b[H\x1b]0;owned\x07\x1b[32mmigrated: committed\x1b[0m"
        "\u202egnp.exe\u2028\x85\x9b")


def _has_controls(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 or c in "\u202e\u2028" for c in text)


def test_printable_escapes_every_control_character() -> None:
    out = printable(EVIL)
    assert not _has_controls(out)
    assert out.startswith("\\r\\x1b[2K")
    for escaped in ("\\u202e", "\\u2028", "\\x85"):
        assert escaped in out


@pytest.mark.parametrize("text", ["plain text", "node-a.example: 10.0.0.1/24 ✓", "naïve café", ""])
def test_printable_leaves_plain_text_alone(text: str) -> None:
    assert printable(text) == text


def test_printable_keeps_the_lines_of_a_table_but_escapes_within_them() -> None:
    assert printable("row 1\nrow\r2\x1b[H", keep_newlines=True) == "row 1\nrow\\r2\\x1b[H"


def test_a_peers_error_is_one_plain_line() -> None:
    line = RemoteError("b\x1b[1mBOLD", "x", EVIL).one_line()
    assert not _has_controls(line)
    assert "\n" not in line


def test_a_log_line_with_peer_text_stays_one_line() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(PrintableFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test_safetext")
    log.addHandler(handler)
    try:
        log.warning("source aborted the migration: %s",
                    "ok\n2026-12-04 00:00:00,000 ferryman.agent INFO committed\x1b[2J")
    finally:
        log.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert not _has_controls(lines[0])
    assert lines[0].endswith("\\n2026-12-04 00:00:00,000 ferryman.agent INFO committed\\x1b[2J")
