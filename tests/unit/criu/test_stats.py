"""CRIU's statistics images (criu/stats.py): read whole, or left out when unreadable."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pycriu import images

from ferryman.criu.stats import read_stats


def _stats_image() -> bytes:
    out = io.BytesIO()
    images.dump({"magic": "STATS", "entries": [{"dump": {
        "freezing_time": 435, "frozen_time": 347027, "memdump_time": 147860,
        "memwrite_time": 110205, "pages_scanned": 67508, "pages_skipped_parent": 0,
        "pages_written": 67401, "pages_lazy": 0}}]}, out)
    return out.getvalue()


def test_a_whole_image_is_read(tmp_path: Path) -> None:
    (tmp_path / "stats-dump").write_bytes(_stats_image())
    stats = read_stats(tmp_path / "stats-dump")
    assert stats["pages_written"] == 67401
    assert stats["frozen_time"] == 347027


@pytest.mark.parametrize("cut", [0, 3, 6, 10, -5])
def test_an_image_still_being_written_is_left_out(tmp_path: Path, cut: int) -> None:
    """A roll-back may read it while the dump writing it still runs (CI saw it empty)."""
    (tmp_path / "stats-dump").write_bytes(_stats_image()[:cut])
    assert read_stats(tmp_path / "stats-dump") == {}


def test_an_absent_image_is_no_error(tmp_path: Path) -> None:
    assert read_stats(tmp_path / "stats-dump") == {}
