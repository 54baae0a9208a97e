"""Whether a process tree holds file locks: flock(2), POSIX (fcntl, lockf), OFD locks, leases.

A daemon's pidfile lock, SQLite's locks, a lock file of any library: CRIU refuses to dump a
tree holding one unless told ``--file-locks`` ("Some file locks are hold without
--file-locks option"), and a hand-typed ``criu dump`` is told so once CRIU asks. ferryman
tells it whenever the tree holds one (criu/client.py).

Which locks are the tree's is read from its processes' ``/proc/PID/fdinfo/FD``: each lists,
as ``lock:`` lines in /proc/locks's format, the locks taken through that open file and owned
by it (flock, OFD: also in every process it was handed to) or by that process (POSIX), which
is how CRIU itself tells a tree's locks (criu/file-lock.c). Not ``/proc/locks``: every read of
it takes the kernel's ``file_rwsem`` for writing and waits for an RCU grace period, 8-26 ms
measured here, three times before each migration's freeze. A tree with more than
:data:`MAX_FDINFO` open files is asked through /proc/locks after all (one slow read costs
less than that many fast ones). The destination's question, whether some process *of its
node* holds a lock on the same file, still needs /proc/locks (:func:`read_locks`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from ferryman.host.procfs import PROC


@dataclass(frozen=True, slots=True)
class Lock:
    """One line of /proc/locks: ``kind`` (FLOCK, POSIX, OFDLCK, LEASE, ...), the owner's PID
    as this PID namespace sees it (-1: none, an OFD lock), the file's device and inode."""

    kind: str
    pid: int
    dev: tuple[int, int]
    ino: int


def parse_locks(text: str, *, waiting: bool = False) -> list[Lock]:
    """The locks held in /proc/locks ``text`` (``waiting``: instead, the locks processes
    wait for, the ``->`` lines); lines of another shape are left out (pure)."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if words[1:2] == ["->"]:
            if not waiting:
                continue
            words = words[:1] + words[2:]
        elif waiting:
            continue
        if len(words) < 6:
            continue
        kind, pid, where = words[1], words[4], words[5]
        parts = where.split(":")
        try:
            lock = Lock(kind, int(pid), (int(parts[0], 16), int(parts[1], 16)), int(parts[2]))
        except (ValueError, IndexError):
            continue
        out.append(lock)
    return out


def holds_lock(fdinfo_text: str) -> bool:
    """Whether an fd's ``/proc/PID/fdinfo/FD`` text lists a lock (a ``lock:`` line, whatever
    its shape: the ``--file-locks`` decision stays inclusive) (pure)."""
    return any(line.startswith("lock:") for line in fdinfo_text.splitlines())


def read_locks(proc: Path = PROC, *, waiting: bool = False) -> list[Lock]:
    """This node's held locks (``waiting``: the ones waited for); none when /proc/locks
    cannot be read."""
    try:
        return parse_locks((proc / "locks").read_text(), waiting=waiting)
    except OSError:
        return []


def _on(locks: Iterable[Lock], files: Iterable[tuple[str, int, int]]) -> list[str]:
    """Which of ``files`` (path, st_dev, inode) one of ``locks`` is on."""
    held = {(lock.dev, lock.ino) for lock in locks}
    return sorted({path for path, dev, ino in files
                   if ((os.major(dev), os.minor(dev)), ino) in held})


def locked_here(locks: Iterable[Lock], files: Iterable[tuple[str, int, int]]) -> list[str]:
    """Which of ``files`` (path, st_dev, inode) some process of this node holds a lock on
    (pure)."""
    return _on(locks, files)


def _open_files(pids: Collection[int], proc: Path) -> set[tuple[tuple[int, int], int]]:
    found = set()
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            for fd in (proc / str(pid) / "fd").iterdir():
                with contextlib.suppress(OSError):
                    st = fd.stat()
                    found.add(((os.major(st.st_dev), os.minor(st.st_dev)), st.st_ino))
    return found


MAX_FDINFO = 2000  # open files of a tree read one by one; past that, /proc/locks once


def _fdinfos(pids: Collection[int], proc: Path) -> list[Path] | None:
    """Every ``fdinfo`` file of the processes ``pids``; None past :data:`MAX_FDINFO`."""
    found: list[Path] = []
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            found.extend((proc / str(pid) / "fdinfo").iterdir())
        if len(found) > MAX_FDINFO:
            return None
    return found


def tree_holds_locks(tree: Collection[int], proc: Path = PROC) -> bool:
    """Whether the tree (its PIDs) holds a file lock; False when neither its fdinfo nor
    /proc/locks can be read (CRIU then says what it finds)."""
    infos = _fdinfos(tree, proc)
    if infos is not None:
        for info in infos:
            with contextlib.suppress(OSError):  # closed meanwhile
                if holds_lock(info.read_text()):
                    return True
        return False
    locks = read_locks(proc)
    if not locks:
        return False
    pids = set(tree)
    if any(lock.pid in pids for lock in locks):
        return True
    files = _open_files(pids, proc)
    return any((lock.dev, lock.ino) in files for lock in locks)
