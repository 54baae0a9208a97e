"""A restore that waits for a file lock: found within a second, instead of freezing the
workload until the restore's timeout.

CRIU takes a tree's file locks again while it restores it (``--file-locks``), with calls
that wait: when a process on the destination holds the lock, or the lock file is the very
file the frozen source still locks (shared storage, or one host), the restore waits for
ever. The pre-flight refuses what it can see (migration/checks.py ``lock_rows``), but not
what it is not told about (files a node withholds, another client of a network filesystem).
:func:`waiting_descendants` finds the processes below the restoring criu that wait in
/proc/locks (the ``->`` lines): the tasks it is restoring, never a workload restored
earlier (those descend from the agent too).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from ferryman.host.filelocks import read_locks
from ferryman.host.procfs import PROC

POLL_S = 0.1
GRACE_S = 0.5  # a wait this long is no passing contention


@dataclass(frozen=True, slots=True)
class LockWait:
    pid: int  # the waiting process (a task CRIU is restoring)
    path: str  # the file, as the waiting process has it open ("?" if unknown)


def parent(pid: int, proc: Path = PROC) -> int | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


def descends_from(pid: int, ancestor: int, proc: Path = PROC) -> bool:
    seen = 0
    while pid > 1 and seen < 4096:
        if pid == ancestor:
            return True
        up = parent(pid, proc)
        if up is None:
            return False
        pid, seen = up, seen + 1
    return pid == ancestor


def _path_of(pid: int, dev: tuple[int, int], ino: int, proc: Path) -> str:
    with contextlib.suppress(OSError):
        for fd in (proc / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError):
                st = fd.stat()
                if (os.major(st.st_dev), os.minor(st.st_dev)) == dev and st.st_ino == ino:
                    return str(fd.readlink())
    return "?"


def waiting_descendants(ancestor: int, proc: Path = PROC) -> list[LockWait]:
    """The processes below ``ancestor`` that wait for a file lock now."""
    return [LockWait(w.pid, _path_of(w.pid, w.dev, w.ino, proc))
            for w in read_locks(proc, waiting=True)
            if w.pid > 0 and descends_from(w.pid, ancestor, proc)]


async def stuck(ancestor: list[int], proc: Path = PROC) -> list[LockWait]:
    """Returns once processes below ``ancestor[0]`` (given once known) have waited for file
    locks for :data:`GRACE_S` (the same ones at both ends); runs until cancelled otherwise."""
    first: dict[int, float] = {}
    loop = asyncio.get_running_loop()
    while True:
        now = loop.time()
        waits = await asyncio.to_thread(waiting_descendants, ancestor[0], proc) \
            if ancestor else []
        first = {w.pid: first.get(w.pid, now) for w in waits}
        long = [w for w in waits if now - first[w.pid] >= GRACE_S]
        if long:
            return long
        await asyncio.sleep(POLL_S)
