"""The memory sample behind --compress auto: which mappings, which pieces (pure parts)."""

from __future__ import annotations

from ferryman.host.memsample import spread, writable_private

MAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234 /usr/bin/redis-server
55d0c0200000-55d0c0300000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
7f0000400000-7f0000401000 rw-s 00000000 00:01 99 /dev/zero (deleted)
7f0000500000-7f0000600000 rw-p 00010000 08:01 1234 /usr/lib/libc.so.6
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
7ffc00100000-7ffc00102000 r--p 00000000 00:00 0 [vvar]
7ffc00102000-7ffc00104000 rw-p 00000000 00:00 0 [vdso]
"""


def test_only_private_writable_anonymous_heap_and_stack() -> None:
    assert writable_private(MAPS) == [(0x55D0C0200000, 0x55D0C0300000),
                                      (0x7F0000000000, 0x7F0000400000),
                                      (0x7FFC00000000, 0x7FFC00021000)]


def test_pieces_are_spread_evenly_over_all_ranges() -> None:
    ranges = [(0, 100), (1000, 1300)]  # 400 bytes in all
    assert spread(ranges, 4, 10) == [(0, 10), (1000, 10), (1100, 10), (1200, 10)]
    assert spread(ranges, 4, 500) == [(0, 100), (1000, 300), (1100, 200), (1200, 100)]
    assert spread([], 4, 10) == []
    assert len(spread([(0, 1 << 30)], 32, 256 << 10)) == 32
