"""Soft-dirty probe: the pure parts (maps filter, pagemap bit count) and a fake procfs."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ferryman.errors import NoSuchProcess
from ferryman.host.dirty import (
    SOFT_DIRTY,
    count_soft_dirty,
    probe_dirty_rate,
    writable_private_ranges,
)

MAPS = """\
00400000-00401000 r-xp 00000000 08:01 1 /usr/bin/python3
00600000-00602000 rw-p 00000000 08:01 1 /usr/bin/python3
7f0000000000-7f0000004000 rw-s 00000000 00:01 2 /dev/shm/x
7f0000010000-7f0000013000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00001000 r--p 00000000 00:00 0 [vvar]
"""


def test_only_writable_private_mappings() -> None:
    assert list(writable_private_ranges(MAPS)) == [(0x600000, 0x602000),
                                                  (0x7F0000010000, 0x7F0000013000)]
    assert list(writable_private_ranges("garbage\n\n")) == []


def test_count_soft_dirty_bits() -> None:
    raw = struct.pack("=4Q", SOFT_DIRTY, 0, SOFT_DIRTY | 1 << 63, 1 << 63)
    assert count_soft_dirty(raw) == 2
    assert count_soft_dirty(raw + b"\x01\x02") == 2  # a torn entry is ignored


def _fake_proc(tmp_path: Path, dirty: list[bool]) -> Path:
    d = tmp_path / "42"
    d.mkdir()
    (d / "maps").write_text("00001000-00005000 rw-p 00000000 00:00 0\n")
    entries = [SOFT_DIRTY if x else 0 for x in dirty]
    # pagemap is indexed by virtual page number: pages 1..4 hold the mapping
    (d / "pagemap").write_bytes(struct.pack(f"={1 + len(entries)}Q", SOFT_DIRTY, *entries))
    (d / "clear_refs").write_text("")
    return tmp_path


def test_probe_counts_the_mapping_pages_over_the_window(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, [True, False, True, True])
    ticks = iter([10.0, 10.5])
    slept: list[float] = []
    rate = probe_dirty_rate([42], 0.5, proc=proc, sleep=slept.append,
                            clock=lambda: next(ticks))
    assert (proc / "42" / "clear_refs").read_text() == "4"
    assert slept == [0.5]
    # three dirty pages of the mapping in 0.5 s; page 0 (outside it) is not counted
    assert rate == 6.0


def test_probe_of_a_gone_process(tmp_path: Path) -> None:
    with pytest.raises(NoSuchProcess):
        probe_dirty_rate([7], 0.0, proc=tmp_path, sleep=lambda s: None)
