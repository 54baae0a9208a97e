"""Userfaultfd write-protect in async mode, and PAGEMAP_SCAN: the kernel's written-page bits.

A userfaultfd with ``UFFD_FEATURE_WP_ASYNC`` (+ ``WP_UNPOPULATED``) whose ranges are
registered in write-protect mode never delivers a fault: the kernel itself drops a page's
protection on its first write. ``ioctl(PAGEMAP_SCAN)`` on ``/proc/PID/pagemap`` then reports
a page as ``PAGE_IS_WRITTEN`` unless it is still protected -- so a page outside any
registered range is always "written" (unknown = dirty) -- and with ``PM_SCAN_WP_MATCHING``
protects the matching pages again. This is what replaces the soft-dirty bits on kernels
without ``CONFIG_MEM_SOFT_DIRTY`` (kernel 6.7+, ``CONFIG_USERFAULTFD``,
``CONFIG_PTE_MARKER_UFFD_WP``).

The ioctls act on the memory of the process that *created* the descriptor: see
:mod:`ferryman.host.inject` for how a workload is made to create one. Only anonymous,
shmem/memfd and hugetlb mappings can be registered; the kernel refuses file mappings
(their pages stay "written").
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

NR_USERFAULTFD: Final = 323  # x86-64
UFFD_USER_MODE_ONLY: Final = 1
O_CLOEXEC: Final = os.O_CLOEXEC
O_NONBLOCK: Final = os.O_NONBLOCK
UFFD_API: Final = 0xAA
FEATURE_WP_HUGETLBFS_SHMEM: Final = 1 << 12
FEATURE_WP_UNPOPULATED: Final = 1 << 13
FEATURE_WP_ASYNC: Final = 1 << 15
WANTED: Final = FEATURE_WP_ASYNC | FEATURE_WP_UNPOPULATED
REGISTER_MODE_WP: Final = 1 << 1
WRITEPROTECT_MODE_WP: Final = 1 << 0


def _iowr(kind: int, nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (kind << 8) | nr


UFFDIO_API: Final = _iowr(0xAA, 0x3F, 24)
UFFDIO_REGISTER: Final = _iowr(0xAA, 0x00, 32)
UFFDIO_WRITEPROTECT: Final = _iowr(0xAA, 0x06, 24)
PAGEMAP_SCAN: Final = _iowr(ord("f"), 16, 96)
PAGE_IS_WPALLOWED: Final = 1 << 0
PAGE_IS_WRITTEN: Final = 1 << 1
PAGE_IS_FILE: Final = 1 << 2
PAGE_IS_PRESENT: Final = 1 << 3
PAGE_IS_SWAPPED: Final = 1 << 4
PAGE_IS_PFNZERO: Final = 1 << 5
PM_SCAN_WP_MATCHING: Final = 1 << 0
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
_SCAN = struct.Struct("12Q")
_REGION = struct.Struct("3Q")
SKIP_NAMES: Final = ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]")


def enable(fd: int) -> int:
    """UFFDIO_API asking for async write-protect; returns the features granted.

    Raises OSError(EINVAL) when the kernel lacks WP_ASYNC / WP_UNPOPULATED.
    """
    arg = bytearray(struct.pack("3Q", UFFD_API, WANTED | FEATURE_WP_HUGETLBFS_SHMEM, 0))
    try:
        fcntl.ioctl(fd, UFFDIO_API, arg)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        # a kernel without hugetlbfs/shmem WP still tracks anonymous memory
        arg = bytearray(struct.pack("3Q", UFFD_API, WANTED, 0))
        fcntl.ioctl(fd, UFFDIO_API, arg)
    return int(struct.unpack("3Q", arg)[1])


def register(fd: int, start: int, end: int) -> bool:
    """Register ``[start, end)`` for async write-protect; False when the kernel refuses the
    mapping (a file mapping, or one another userfaultfd holds): its pages stay "written"."""
    arg = bytearray(struct.pack("4Q", start, end - start, REGISTER_MODE_WP, 0))
    try:
        fcntl.ioctl(fd, UFFDIO_REGISTER, arg)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EBUSY, errno.EPERM, errno.ENOMEM):
            return False
        raise
    return True


def write_protect(fd: int, start: int, end: int) -> None:
    fcntl.ioctl(fd, UFFDIO_WRITEPROTECT,
                bytearray(struct.pack("3Q", start, end - start, WRITEPROTECT_MODE_WP)))


@dataclass(frozen=True, slots=True)
class Mapping:
    start: int
    end: int
    perms: str
    name: str


def mappings(pid: int, maps: Path | None = None) -> Iterator[Mapping]:
    """``pid``'s mappings (from ``maps``, default its own /proc/PID/maps)."""
    for line in (maps or Path(f"/proc/{pid}/maps")).read_text().splitlines():
        fields = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        yield Mapping(lo, hi, fields[1], fields[5] if len(fields) > 5 else "")


def candidates(maps: Iterator[Mapping]) -> Iterator[Mapping]:
    """Mappings worth registering: all but the kernel's special ones. Read-only ones too:
    CRIU dumps the copied-on-write pages of a private file mapping made read-only after
    relocation (a program's RELRO), and a later mprotect() could make any writable."""
    for m in maps:
        if m.name not in SKIP_NAMES:
            yield m


def scan(pagemap_fd: int, start: int, end: int, *, category_mask: int,
         return_mask: int, flags: int = 0, max_regions: int = 4096) -> list[tuple[int, int, int]]:
    """PAGEMAP_SCAN over ``[start, end)`` (in as many calls as the region buffer needs):
    ``(start, end, categories)`` of the pages matching every bit of ``category_mask``."""
    out: list[tuple[int, int, int]] = []
    buf = (ctypes.c_uint64 * (3 * max_regions))()
    while start < end:
        arg = bytearray(_SCAN.pack(_SCAN.size, flags, start, end, 0, ctypes.addressof(buf),
                                   max_regions, 0, 0, category_mask, 0, return_mask))
        n = fcntl.ioctl(pagemap_fd, PAGEMAP_SCAN, arg)
        walk_end = _SCAN.unpack(arg)[4]
        out.extend((buf[3 * i], buf[3 * i + 1], buf[3 * i + 2]) for i in range(n))
        if walk_end <= start:
            break
        start = walk_end
    return out


def count_pages(regions: list[tuple[int, int, int]]) -> int:
    return sum((hi - lo) // PAGE_SIZE for lo, hi, _ in regions)
