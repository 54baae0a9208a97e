"""Which terminal indexes are taken in a node's /dev/pts (agent/preflight.py: taken_ptys)."""

from __future__ import annotations

from pathlib import Path

from ferryman.agent.preflight import taken_ptys


def test_an_index_is_taken_when_its_device_exists(tmp_path: Path) -> None:
    for name in ("0", "3", "ptmx"):
        (tmp_path / name).touch()
    assert taken_ptys((0, 1, 3, 9), tmp_path) == (0, 3)
    assert taken_ptys((), tmp_path) == ()
