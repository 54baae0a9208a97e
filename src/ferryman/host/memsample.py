"""A sample of a process tree's private memory, read from ``/proc/PID/mem`` while it runs.

For ``--compress auto`` (``migration/compress.py``): how well the pages a dump would send
compress. The sample is ``count`` pieces of ``piece`` bytes spread evenly over the tree's
private writable mappings (anonymous, heap, stack: what CRIU dumps as pages), as much from
each byte of memory as from any other. Pieces that cannot be read (unmapped meanwhile, a
guard page) are skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

PIECE = 256 << 10
COUNT = 32


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


def spread(ranges: list[tuple[int, int]], count: int, piece: int) -> list[tuple[int, int]]:
    """``count`` (address, length) pieces at even steps over the ranges' total (pure)."""
    total = sum(hi - lo for lo, hi in ranges)
    if total <= 0 or count <= 0:
        return []
    step = max(total // count, 1)
    out: list[tuple[int, int]] = []
    at = 0
    for lo, hi in ranges:
        size = hi - lo
        while at < size and len(out) < count:
            out.append((lo + at, min(piece, size - at)))
            at += step
        at -= size
    return out


def sample(pids: Iterable[int], count: int = COUNT, piece: int = PIECE,
           proc: Path = Path("/proc")) -> list[bytes]:
    """Pieces of the processes' private memory (see the module doc); [] if none readable."""
    where: list[tuple[int, int, int]] = []
    for pid in pids:
        with contextlib.suppress(OSError):
            ranges = writable_private((proc / str(pid) / "maps").read_text())
            where += [(pid, a, n) for a, n in spread(ranges, count, piece)]
    if not where:
        return []
    step = max(len(where) // count, 1)
    out: list[bytes] = []
    for pid, addr, n in where[::step][:count]:
        with contextlib.suppress(OSError, ValueError), \
                open(proc / str(pid) / "mem", "rb", buffering=0) as fh:
            fh.seek(addr)
            out.append(fh.read(n))
    return out
