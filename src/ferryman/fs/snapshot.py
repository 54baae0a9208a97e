"""Did anything under these directories change? The inode facts of every entry, compared.

The frozen window's rsync (phase 2) costs 100-200 ms even when it has nothing to move: rsync
and its tunnel start, connect, and exchange file lists. A container whose files did not
change since the pre-sync needs none of that. :func:`take` records, before the pre-sync
starts, each entry's inode, type and permissions, owner, size, mtime and ctime (lstat: links
are not followed); :func:`take` again once the container is frozen, and equal snapshots mean
the pre-sync's copy is final. The ctime matters: every change of a file's data, metadata or
name sets it (writes through a shared mapping too, which inotify does not report), and no
program can set it back. A change during the pre-sync itself is after the first snapshot, so
it shows too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

Facts = tuple[int, int, int, int, int, int, int, int]
Snapshot = dict[str, Facts]


def _facts(st: os.stat_result) -> Facts:
    return (st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns, st.st_nlink)


def take(roots: Iterable[Path]) -> Snapshot:
    """Every entry under ``roots`` (and the roots), by path. A root that does not exist is
    recorded as missing (an empty snapshot of it)."""
    snap: Snapshot = {}
    stack: list[str] = []
    for root in roots:
        try:
            snap[str(root)] = _facts(os.lstat(root))
        except FileNotFoundError:
            continue
        stack.append(str(root))
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            snap[e.path] = _facts(st)
            if stat.S_ISDIR(st.st_mode):
                stack.append(e.path)
    return snap


def differences(before: Snapshot, after: Snapshot, limit: int = 5) -> list[str]:
    """Up to ``limit`` paths that were added, removed or changed (sorted; empty: none)."""
    changed = [p for p in before.keys() | after.keys() if before.get(p) != after.get(p)]
    return sorted(changed)[:limit]
