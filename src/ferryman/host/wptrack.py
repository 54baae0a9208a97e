"""Dirty tracking without soft-dirty: one async write-protect userfaultfd per process.

The **uffd-wp tracker** (issue 15). For every process of the tree ferryman has the process
itself create a userfaultfd (:mod:`ferryman.host.inject`), copies it into the agent, closes
the workload's copy, and registers the process's mappings in async write-protect mode
(:mod:`ferryman.host.uffd`). CRIU, told ``track_mem_uffd``, then reads PAGEMAP_SCAN's
written bit where it read soft-dirty, and write-protects the written pages again while the
tree is frozen (scripts/criu-patches/uffd-track-mem.patch).

Who holds what: the agent holds the descriptors, from the first pre-dump until the final
dump is over (:meth:`WriteTracker.close`); the workload never holds one, so CRIU never sees
one (criu#2021). When the agent dies the kernel drops every protection with the last
reference and the workload runs on untouched.

Correctness rests on one rule: a page is *protected* only by CRIU, right after it dumped the
page (or found it in the parent images) with the tree frozen. Everything else reads as
written and is dumped again: mappings created, moved (mremap drops the registration) or grown
since :meth:`WriteTracker.arm` last registered them, a child forked since (fork drops the
registration in the child), a process that exec()ed (a new address space). ``arm`` before
every pre-dump registers what is new without protecting it, so it is dumped whole once.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ferryman.errors import FerrymanError, NoSuchProcess
from ferryman.host import inject, uffd

log = logging.getLogger(__name__)
TRACKER: Final = "uffd-wp"
PROC: Final = Path("/proc")
TASK_END: Final = 0x7FFFFFFFF000  # x86-64's user address space
UFFD_LINK: Final = "anon_inode:[userfaultfd]"
CREATE_FLAGS: Final = uffd.O_CLOEXEC | uffd.O_NONBLOCK | uffd.UFFD_USER_MODE_ONLY


class TrackerUnavailable(FerrymanError):
    """The uffd-wp tracker cannot follow process ``pid`` (the message says why)."""

    def __init__(self, pid: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "use --mode cold or --mode postcopy")
        self.pid = pid


def kernel_supports() -> bool:
    """This kernel and architecture can run the tracker: a userfaultfd of our own grants
    WP_ASYNC and WP_UNPOPULATED, and ferryman can inject system calls here (x86-64)."""
    if not inject.supported():
        return False
    try:
        fd = inject.raw_syscall(uffd.NR_USERFAULTFD, CREATE_FLAGS)
    except OSError:
        return False
    try:
        return uffd.enable(fd) & uffd.WANTED == uffd.WANTED
    except OSError:
        return False
    finally:
        os.close(fd)


def holds_userfaultfd(pid: int) -> bool:
    """Whether process ``pid`` holds a userfaultfd of its own."""
    try:
        entries = list((PROC / str(pid) / "fd").iterdir())
    except FileNotFoundError:
        return False
    for entry in entries:
        try:
            if str(entry.readlink()) == UFFD_LINK:
                return True
        except OSError:
            continue
    return False


def zombie(pid: int) -> bool:
    """Whether every thread of ``pid`` has exited (a zombie its parent has not reaped): it
    has no memory left to track, and CRIU dumps it without any."""
    try:
        inject.live_thread(pid)
    except inject.InjectError as exc:
        return exc.errno == errno.ESRCH and (PROC / str(pid)).exists()
    except FileNotFoundError:
        return False
    return False


def seccomp_filtered(pid: int) -> bool:
    """Whether ``pid`` runs under a seccomp filter (``Seccomp: 2`` in its status)."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except FileNotFoundError:
        return False
    for line in text.splitlines():
        if line.startswith("Seccomp:"):
            return line.split()[1] != "0"
    return False


@dataclass(slots=True)
class _Space:
    """One process's address space, as its userfaultfd sees it."""

    fd: int
    registered: set[tuple[int, int]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ArmStats:
    processes: int
    new_processes: int
    new_mappings: int  # registered by this arm() (to be dumped whole once)
    refused_mappings: int  # the kernel would not register them: always dumped


class WriteTracker:
    """The userfaultfds of one migration's tree, by PID (see the module doc)."""

    def __init__(self) -> None:
        self._spaces: dict[int, _Space] = {}
        self._closed = False

    def arm(self, pids: Iterable[int]) -> ArmStats:
        """Make every process of ``pids`` tracked, registering its new mappings (blocking:
        ptrace and ioctls, milliseconds per process). Call it before each pre-dump, never
        while CRIU runs. Processes gone since the last call are dropped.

        Zombies are left out: they have no memory. Raises TrackerUnavailable when a process
        holds a userfaultfd of its own (CRIU cannot dump it) or cannot be made to create one
        (seccomp, another tracer).
        """
        if self._closed:
            raise FerrymanError("the write tracker is closed")
        wanted = list(pids)
        for pid in set(self._spaces) - set(wanted):
            os.close(self._spaces.pop(pid).fd)
        new = new_maps = refused = 0
        for pid in wanted:
            if zombie(pid):  # no memory: nothing to track (it may have exited since the last)
                if pid in self._spaces:
                    os.close(self._spaces.pop(pid).fd)
                continue
            space = self._spaces.get(pid)
            if space is None:
                try:
                    space = self._spaces[pid] = _Space(self._open(pid))
                except TrackerUnavailable:
                    if not (PROC / str(pid)).exists():
                        continue  # exited meanwhile: not in the next dump either
                    raise
                new += 1
            try:
                n, r = self._register(pid, space)
            except OSError as exc:
                if exc.errno not in (errno.ESRCH, errno.ENOENT):
                    raise
                # exec()ed (the descriptor's address space is gone) or exited: start over
                os.close(self._spaces.pop(pid).fd)
                if not (PROC / str(pid)).exists():
                    continue
                space = self._spaces[pid] = _Space(self._open(pid))
                n, r = self._register(pid, space)
            new_maps += n
            refused += r
        return ArmStats(len(self._spaces), new, new_maps, refused)

    @staticmethod
    def _open(pid: int) -> int:
        if seccomp_filtered(pid):
            raise TrackerUnavailable(
                pid, f"PID {pid} runs under a seccomp filter: ferryman will not run "
                "userfaultfd() in it (the filter could kill it), so pre-copy cannot track "
                "its writes without soft-dirty")
        if holds_userfaultfd(pid):
            raise TrackerUnavailable(
                pid, f"PID {pid} uses userfaultfd itself: CRIU cannot dump a process that "
                "holds one (criu#2021), so it cannot be migrated",
                hint="stop the workload's own use of userfaultfd before migrating it")
        try:
            fd = inject.open_fd_in(pid, uffd.NR_USERFAULTFD, CREATE_FLAGS)
        except inject.InjectError as exc:
            raise TrackerUnavailable(pid, f"cannot track PID {pid}'s writes: {exc}") from exc
        except inject.CallFailed as exc:
            raise TrackerUnavailable(
                pid, f"PID {pid} may not create a userfaultfd ({exc.strerror}), so pre-copy "
                "cannot track its writes without soft-dirty") from exc
        except OSError as exc:
            raise TrackerUnavailable(pid, f"cannot take PID {pid}'s userfaultfd: "
                                     f"{exc.strerror}") from exc
        try:
            uffd.enable(fd)
        except OSError:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _register(pid: int, space: _Space) -> tuple[int, int]:
        new = refused = 0
        current = set()
        for m in uffd.candidates(uffd.mappings(pid, inject.thread_dir(pid) / "maps")):
            key = (m.start, m.end)
            current.add(key)
            if key in space.registered:
                continue  # registering again would be a no-op; skip the ioctl
            if uffd.register(space.fd, m.start, m.end):
                new += 1
            else:
                refused += 1
        space.registered = current
        return new, refused

    def close(self) -> None:
        """Release every userfaultfd: the kernel unprotects the workload's pages."""
        self._closed = True
        for space in self._spaces.values():
            os.close(space.fd)
        self._spaces.clear()

    def statistics(self) -> dict[str, int]:
        return {"processes": len(self._spaces)}


def _written_pages(pid: int, *, protect: bool) -> int:
    """Present pages of ``pid`` that read as written; ``protect``: protect them too (what
    CRIU does at the end of a dump)."""
    try:
        fd = os.open(inject.thread_dir(pid) / "pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, inject.InjectError) as exc:
        raise NoSuchProcess(pid) from exc
    try:
        mask = uffd.PAGE_IS_WRITTEN | (0 if protect else uffd.PAGE_IS_PRESENT)
        return uffd.count_pages(uffd.scan(
            fd, 0, TASK_END, category_mask=mask, return_mask=uffd.PAGE_IS_WRITTEN,
            flags=uffd.PM_SCAN_WP_MATCHING if protect else 0))
    finally:
        os.close(fd)


def probe_dirty_rate(pids: Sequence[int], window_s: float = 0.5, *,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> float:
    """Pages per second the processes ``pids`` wrote during ``window_s`` seconds, seen by
    the uffd-wp tracker (blocking): :func:`ferryman.host.dirty.probe_dirty_rate` for
    kernels without soft-dirty. The tracker is released afterwards."""
    tracker = WriteTracker()
    pids = [pid for pid in pids if not zombie(pid)]
    try:
        tracker.arm(pids)
        for pid in pids:
            _written_pages(pid, protect=True)
        t0 = clock()
        sleep(window_s)
        written = sum(_written_pages(pid, protect=False) for pid in pids)
        return written / max(clock() - t0, 1e-3)
    finally:
        tracker.close()

