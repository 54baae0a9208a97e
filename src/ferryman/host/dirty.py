"""How fast a process tree dirties its memory: the kernel's soft-dirty bits over a short window.

``clear_refs`` (write ``4``) clears the soft-dirty bit of every page of a task; after the
window, bit 55 of each ``/proc/PID/pagemap`` entry says whether the page was written since.
Only writable private mappings are read (shared and read-only ones are not what pre-copy
re-sends). Needs ``CONFIG_MEM_SOFT_DIRTY`` (CRIU's ``mem_track``): call it only when that
feature is present. CRIU's own pre-dumps clear the bits again, so probing first is harmless.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ferryman.errors import NoSuchProcess
from ferryman.host.pages import PAGE_SIZE

PROC = Path("/proc")
PAGE = PAGE_SIZE
SOFT_DIRTY = 1 << 55
ENTRY = struct.Struct("=Q")
CHUNK_PAGES = 1 << 16


def writable_private_ranges(maps_text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every writable private mapping in a ``/proc/PID/maps`` text."""
    for line in maps_text.splitlines():
        fields = line.split()
        if len(fields) < 2 or len(fields[1]) < 4:
            continue
        perms = fields[1]
        if perms[1] != "w" or perms[3] != "p":
            continue
        start, _, end = fields[0].partition("-")
        yield int(start, 16), int(end, 16)


def count_soft_dirty(pagemap: bytes) -> int:
    """Entries of a raw pagemap read whose soft-dirty bit is set."""
    usable = len(pagemap) - len(pagemap) % ENTRY.size
    return sum(1 for (e,) in ENTRY.iter_unpack(pagemap[:usable]) if e & SOFT_DIRTY)


def _dirty_pages(pid: int, proc: Path) -> int:
    try:
        ranges = list(writable_private_ranges((proc / str(pid) / "maps").read_text()))
        fd = os.open(proc / str(pid) / "pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise NoSuchProcess(pid) from exc
    try:
        total = 0
        for start, end in ranges:
            page = start // PAGE
            while page < end // PAGE:
                n = min(CHUNK_PAGES, end // PAGE - page)
                total += count_soft_dirty(os.pread(fd, n * ENTRY.size, page * ENTRY.size))
                page += n
        return total
    finally:
        os.close(fd)


def probe_dirty_rate(pids: Sequence[int], window_s: float = 0.5, *, proc: Path = PROC,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> float:
    """Pages per second the tasks ``pids`` dirtied during ``window_s`` seconds (blocking)."""
    for pid in pids:
        try:
            (proc / str(pid) / "clear_refs").write_text("4")
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise NoSuchProcess(pid) from exc
    t0 = clock()
    sleep(window_s)
    dirty = sum(_dirty_pages(pid, proc) for pid in pids)
    return dirty / max(clock() - t0, 1e-3)
