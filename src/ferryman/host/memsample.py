"""A sample of a process tree's private memory, read from ``/proc/PID/mem`` while it runs.

For ``--compress auto`` (``migration/compress.py``): how well the pages a dump would send
compress. The sample is ``count`` pieces of up to ``piece`` bytes spread evenly over the
pages of the tree's private writable mappings (anonymous, heap, stack) that are in memory or
swapped out: what CRIU dumps (``/proc/PID/pagemap``; never-touched pages it skips, and reading
them would return zeros). A JVM's reserved heap or a runtime's arenas are mostly such pages:
over whole mappings its sample compressed 25-34x where its dump compressed 3.2-3.7x. Where
pagemap cannot be read, whole mappings are sampled. Pieces that cannot be read (unmapped
meanwhile) are skipped.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from pathlib import Path

PIECE = 256 << 10
COUNT = 32
PAGE = 4096
PAGEMAP_CHUNK = 1 << 20  # bytes of pagemap read at once: 128 Ki pages, 512 MiB of memory
# pagemap's top byte per page: bit 63 present, bit 62 swapped -> b"1", else b"0"
_DUMPED = bytes(b"1"[0] if b & 0xC0 else b"0"[0] for b in range(256))
_RUN = re.compile(b"1+")


def writable_private(maps_text: str) -> list[tuple[int, int]]:
    """(start, end) of the private writable mappings that are not file-backed (pure)."""
    out = []
    for line in maps_text.splitlines():
        cols = line.split(maxsplit=5)
        if len(cols) < 5:
            continue
        perms, inode = cols[1], cols[4]
        path = cols[5].strip() if len(cols) > 5 else ""
        if perms[:2] != "rw" or perms[3] != "p" or inode != "0":
            continue
        if path.startswith("[") and path not in ("[heap]", "[stack]"):
            continue  # [vvar], [vdso] …
        lo, _, hi = cols[0].partition("-")
        out.append((int(lo, 16), int(hi, 16)))
    return out


def spread(ranges: list[tuple[int, int]], count: int, piece: int
           ) -> list[list[tuple[int, int]]]:
    """``count`` pieces at even steps over the ranges laid end to end, each ``piece`` bytes
    (fewer at the very end) as the (address, length) parts it takes from one range and the
    next: every piece weighs the same, however short the runs of pages in memory (pure)."""
    total = sum(hi - lo for lo, hi in ranges)
    if total <= 0 or count <= 0:
        return []
    step = max(total // count, 1)
    out: list[list[tuple[int, int]]] = []
    i, base = 0, 0  # ranges[i] starts at offset ``base`` of the laid-out whole
    for k in range(count):
        at = k * step
        if at >= total:
            break
        while base + ranges[i][1] - ranges[i][0] <= at:
            base += ranges[i][1] - ranges[i][0]
            i += 1
        parts: list[tuple[int, int]] = []
        j, jbase, want = i, base, piece
        while want > 0 and j < len(ranges):
            lo, hi = ranges[j]
            off = max(at - jbase, 0)
            n = min(hi - lo - off, want)
            parts.append((lo + off, n))
            want -= n
            jbase += hi - lo
            j += 1
        out.append(parts)
    return out


def dumped_runs(entries: bytes, start: int) -> list[tuple[int, int]]:
    """(start, end) of the runs of present or swapped pages among pagemap ``entries`` (8
    bytes a page, little-endian) of the pages from address ``start`` (pure)."""
    flags = entries[7::8].translate(_DUMPED)
    return [(start + m.start() * PAGE, start + m.end() * PAGE) for m in _RUN.finditer(flags)]


def in_memory(pagemap: Path, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``ranges`` whose pages are present or swapped (OSError: unreadable)."""
    out: list[tuple[int, int]] = []
    with open(pagemap, "rb", buffering=0) as fh:
        for lo, hi in ranges:
            at = lo
            while at < hi:
                n = min((hi - at) // PAGE * 8, PAGEMAP_CHUNK)
                fh.seek(at // PAGE * 8)
                entries = fh.read(n)
                if not entries:
                    break
                runs = dumped_runs(entries, at)
                if out and runs and out[-1][1] == runs[0][0]:  # a run across two chunks
                    out[-1] = (out[-1][0], runs.pop(0)[1])
                out += runs
                at += len(entries) // 8 * PAGE
    return out


def sample(pids: Iterable[int], count: int = COUNT, piece: int = PIECE,
           proc: Path = Path("/proc"), *, pagemap: bool = True) -> list[bytes]:
    """Pieces of the processes' private memory (see the module doc); [] if none readable.
    ``pagemap`` False: over whole mappings, never-touched pages too (for comparison)."""
    where: list[tuple[int, list[tuple[int, int]]]] = []
    for pid in pids:
        with contextlib.suppress(OSError):
            ranges = writable_private((proc / str(pid) / "maps").read_text())
            with contextlib.suppress(OSError):
                if pagemap:
                    ranges = in_memory(proc / str(pid) / "pagemap", ranges)
            where += [(pid, parts) for parts in spread(ranges, count, piece)]
    if not where:
        return []
    step = max(len(where) // count, 1)
    out: list[bytes] = []
    for pid, parts in where[::step][:count]:
        with contextlib.suppress(OSError, ValueError), \
                open(proc / str(pid) / "mem", "rb", buffering=0) as fh:
            got = []
            for addr, n in parts:
                fh.seek(addr)
                got.append(fh.read(n))
            out.append(b"".join(got))
    return out
