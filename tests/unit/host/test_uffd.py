"""The userfaultfd / PAGEMAP_SCAN constants and the mapping filter (pure)."""

from __future__ import annotations

from ferryman.host import uffd
from ferryman.host.uffd import Mapping, candidates


def test_ioctl_numbers_are_the_kernels() -> None:
    # include/uapi/linux/userfaultfd.h and fs.h (Linux 6.7+), as _IOWR(type, nr, size)
    assert uffd.UFFDIO_API == 0xC018AA3F
    assert uffd.UFFDIO_REGISTER == 0xC020AA00
    assert uffd.UFFDIO_WRITEPROTECT == 0xC018AA06
    assert uffd.PAGEMAP_SCAN == 0xC0606610
    assert uffd.WANTED == (1 << 15) | (1 << 13)  # WP_ASYNC | WP_UNPOPULATED


def test_every_mapping_but_the_kernels_own_is_registered() -> None:
    maps = [Mapping(0x1000, 0x2000, "rw-p", ""), Mapping(0x2000, 0x3000, "r--p", "/lib/x.so"),
            Mapping(0x3000, 0x4000, "r-xp", "[vdso]"), Mapping(0x4000, 0x5000, "r--p", "[vvar]"),
            Mapping(0x5000, 0x6000, "rw-s", "/memfd:x (deleted)"),
            Mapping(0x6000, 0x7000, "--xp", "[vsyscall]")]
    assert [m.start for m in candidates(iter(maps))] == [0x1000, 0x2000, 0x5000]


def test_count_pages() -> None:
    assert uffd.count_pages([(0, 3 * uffd.PAGE_SIZE, 2), (8 * uffd.PAGE_SIZE,
                                                         9 * uffd.PAGE_SIZE, 2)]) == 4
