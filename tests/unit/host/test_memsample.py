"""The memory sample behind --compress auto: which mappings, which pieces (pure parts)."""

from __future__ import annotations

from ferryman.host.memsample import dumped_runs, spread, writable_private

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
    assert spread(ranges, 4, 10) == [[(0, 10)], [(1000, 10)], [(1100, 10)], [(1200, 10)]]
    assert spread([], 4, 10) == []
    assert len(spread([(0, 1 << 30)], 32, 256 << 10)) == 32


def test_a_piece_goes_on_into_the_next_ranges_so_that_every_piece_weighs_the_same() -> None:
    ranges = [(0, 100), (1000, 1300)]
    assert spread(ranges, 4, 150) == [[(0, 100), (1000, 50)], [(1000, 150)],
                                      [(1100, 150)], [(1200, 100)]]
    pages = [(k * 65536, k * 65536 + 4096) for k in range(64)]  # one page in 16 in memory
    pieces = spread(pages, 4, 16384)
    assert [sum(n for _, n in p) for p in pieces] == [16384] * 4
    assert pieces[0] == [(0, 4096), (65536, 4096), (131072, 4096), (196608, 4096)]


def _entries(flags: str) -> bytes:
    """pagemap entries: 'p' present, 's' swapped, '.' neither (a PFN in the low bits)."""
    top = {"p": 0x80, "s": 0x40, ".": 0x00}
    return b"".join(bytes([0x12, 0x34, 0, 0, 0, 0, 0, top[c]]) for c in flags)


def test_only_present_or_swapped_pages_are_sampled() -> None:
    start = 0x7F0000000000
    runs = dumped_runs(_entries("..pp.s..ppp"), start)
    assert runs == [(start + 2 * 4096, start + 4 * 4096), (start + 5 * 4096, start + 6 * 4096),
                    (start + 8 * 4096, start + 11 * 4096)]
    assert dumped_runs(_entries("...."), start) == []
    assert dumped_runs(b"", start) == []
