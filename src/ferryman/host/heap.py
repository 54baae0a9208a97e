"""glibc's heap kept for the page relay's large buffers.

The relay moves its stream in chunks of up to a few MiB: each is a new ``bytes`` (the socket
read, the TLS record batch, the decompressed frame). glibc serves such sizes with ``mmap`` and
unmaps them when freed, or grows and trims its heap around them, so every chunk cost a fresh
set of zero-filled pages: a page fault per 4 KiB, ~15% of each relay's time moving 1 GiB of
incompressible lazy pages (perf). With the mmap threshold above the relay's chunk sizes and a
trim threshold above its working set, freed chunks stay in the heap and are reused: post-copy
of 1 GiB of random pages, every page there, 1.8 -> 1.2 s (bench, postcopy-random).

At most ``TRIM_THRESHOLD`` of free heap is kept from the kernel afterwards.
"""

from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 8 << 20  # above the relay's chunks (agent/pagerelay.py: MAX_RAW 4 MiB)
TRIM_THRESHOLD = 32 << 20


@functools.cache
def keep_large_buffers() -> bool:
    """Once per process; False where the C library has no ``mallopt`` (not glibc)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.debug("mallopt refused the relay's heap thresholds")
    return ok
