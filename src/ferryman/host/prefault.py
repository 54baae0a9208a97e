"""Memory made resident before the freeze, on a node whose free memory its hypervisor takes.

A virtual machine whose balloon device reports free pages (virtio-balloon's
``VIRTIO_BALLOON_F_REPORTING``, feature bit 5: Firecracker, Cloud Hypervisor, QEMU with
``free-page-reporting=on``) hands every 2 MiB block that stays free for about two seconds
back to its host; the next first touch of such a page faults in the host as well. Measured
on the test host (2026-12-05): 1 GiB of fresh anonymous memory touched in 0.39-0.43 s while
it was recently freed, 2.7-3.1 s once the host had taken it. A destination that receives
1 GiB of pages (the page cache of the images) and restores 1 GiB (the tree's memory) pays
that inside the frozen window.

A :class:`Reserve` touches the memory before the freeze (``MADV_POPULATE_WRITE``) and gives it
back in parts right before each part is needed: freed pages go to the head of the kernel's
free lists and are taken first, the reported ones stay at their tail.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ferryman.host import cgroups, procfs
from ferryman.host.procfs import PROC

CHUNK = 64 << 20
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14
PAGE = mmap.PAGESIZE
VIRTIO_BALLOON = 0x0005  # the virtio device ID of a memory balloon
F_REPORTING = 5  # VIRTIO_BALLOON_F_REPORTING
VIRTIO_DEVICES = Path("/sys/bus/virtio/devices")
WORKERS = min(4, os.cpu_count() or 1)  # threads making memory resident at once

_madvise = ctypes.CDLL(None, use_errno=True).madvise
_madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_madvise.restype = ctypes.c_int


def balloon_reports(device_id: str, features: str) -> bool:
    """Whether a virtio device (its sysfs ``device`` and ``features`` files: ``0x0005`` and a
    string of 0s and 1s, bit 0 first) is a balloon that reports free pages."""
    try:
        dev = int(device_id.strip(), 16)
    except ValueError:
        return False
    bits = features.strip()
    return dev == VIRTIO_BALLOON and len(bits) > F_REPORTING and bits[F_REPORTING] == "1"


def free_pages_reported(devices: Path = VIRTIO_DEVICES) -> bool:
    """Whether this node's free memory goes back to a hypervisor (a reporting balloon)."""
    try:
        entries = list(devices.iterdir())
    except OSError:
        return False  # no virtio bus: not such a guest
    for dev in entries:
        try:
            if balloon_reports((dev / "device").read_text(), (dev / "features").read_text()):
                return True
        except OSError:
            continue
    return False


def cgroup_room(proc_cgroup: str, mountinfo: str) -> int | None:
    """Bytes this process's memory cgroup can still take before its limit (``proc_cgroup``
    and ``mountinfo``: the text of ``/proc/self/cgroup`` and ``/proc/self/mountinfo``); None
    when no limit applies or none can be read. A prefault past it would have the kernel's
    OOM killer end the agent (the unit may set ``MemoryMax``)."""
    v1, v2 = cgroups.parse_cgroup_file(proc_cgroup, "memory")
    v1_mount, v2_mount = cgroups.parse_mountinfo(mountinfo, "memory")
    rooms = []
    if v2 is not None and v2_mount is not None:  # the limit of each level down to ours
        parts = [p for p in v2.split("/") if p]
        for depth in range(len(parts), 0, -1):
            here = Path(v2_mount).joinpath(*parts[:depth])
            rooms.append(_room(here / "memory.max", here / "memory.current"))
    if v1 is not None and v1_mount is not None:
        here = Path(v1_mount) / v1.lstrip("/")
        rooms.append(_room(here / "memory.limit_in_bytes", here / "memory.usage_in_bytes"))
    known = [r for r in rooms if r is not None]
    return min(known) if known else None


def _room(limit_file: Path, usage_file: Path) -> int | None:
    try:
        limit = limit_file.read_text().strip()
        usage = int(usage_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:  # v1: "unlimited"
        return None
    return max(0, int(limit) - usage)


def spare_memory() -> int:
    """What this process may make resident: ``MemAvailable``, bounded by the room left in
    its memory cgroup (:func:`cgroup_room`)."""
    available = procfs.memory_available()
    try:
        room = cgroup_room((PROC / "self" / "cgroup").read_text(),
                           (PROC / "self" / "mountinfo").read_text())
    except OSError:
        return available
    return available if room is None else min(available, room)


def populate(chunk: mmap.mmap) -> None:
    """Make ``chunk`` resident: ``MADV_POPULATE_WRITE`` through libc, which lets go of the
    GIL meanwhile (``mmap.madvise`` holds it: the agent's event loop stood still for 41-44 ms
    per 64 MiB, 1.4-1.5 ms this way, 2026-12-05); on a kernel older than 5.14 (EINVAL) each
    page touched."""
    view = (ctypes.c_char * len(chunk)).from_buffer(chunk)
    try:
        rc = _madvise(ctypes.addressof(view), len(chunk), MADV_POPULATE_WRITE)
        err = ctypes.get_errno()
    finally:
        del view  # the mapping can be closed again
    if rc == 0:
        return
    if err != errno.EINVAL:
        raise OSError(err, os.strerror(err))
    for off in range(0, len(chunk), PAGE):
        chunk[off] = 1


class Reserve:
    """Anonymous memory made resident now and given back in parts later."""

    def __init__(self) -> None:
        self._chunks: list[mmap.mmap] = []
        self.timings: list[tuple[int, float]] = []  # each chunk filled: bytes, seconds

    @property
    def size(self) -> int:
        return sum(len(c) for c in self._chunks)

    def fill(self, nbytes: int, deadline: float | None = None, workers: int = WORKERS) -> int:
        """Make ``nbytes`` more resident (``CHUNK`` at a time, ``workers`` of them at once,
        none begun after ``deadline``, a ``time.monotonic()``); the bytes made resident.
        2 GiB on the test host's 2 CPUs: 372-419 ms with two, 663-677 ms with one. OSError
        (ENOMEM) when the node cannot: what was filled stays until released."""
        sizes = [CHUNK] * (nbytes // CHUNK)
        if rest := -(-(nbytes % CHUNK) // PAGE) * PAGE:
            sizes.append(rest)
        chunks = [mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                  for size in sizes]

        def one(chunk: mmap.mmap) -> bool:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            t0 = time.monotonic()
            populate(chunk)
            self.timings.append((len(chunk), time.monotonic() - t0))  # list.append: atomic
            return True

        error: OSError | None = None
        done = 0
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for chunk, filled in zip(chunks, [pool.submit(one, c) for c in chunks],
                                     strict=True):
                try:
                    kept = filled.result()
                except OSError as exc:
                    error, kept = error or exc, False
                if kept:
                    self._chunks.append(chunk)
                    done += len(chunk)
                else:
                    chunk.close()
        if error is not None:
            raise error
        return done

    def release(self, nbytes: int | None = None) -> int:
        """Give back ``nbytes`` (at least; None: all); the bytes given back."""
        freed = 0
        while self._chunks and (nbytes is None or freed < nbytes):
            chunk = self._chunks.pop()
            freed += len(chunk)
            chunk.close()
        return freed
