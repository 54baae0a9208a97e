"""The largest open-but-deleted file a process tree holds (CRIU's "ghost files").

CRIU copies a file the tree holds open or mapped after it was deleted into the images, but
only up to ``--ghost-limit`` (1 MiB by default: "Can't dump ghost file ... of N size,
increase limit"). A scratch file unlinked after opening, a log rotated away, a service
still mapping the shared libraries an upgrade replaced: each is such a file, and a
hand-typed ``criu dump`` is given a larger limit once CRIU names it. ferryman gives the
limit the largest such file needs (criu/client.py), measured here: the tree's descriptors
(``/proc/PID/fd``) and its mappings (``/proc/PID/map_files``, read only where
``/proc/PID/maps`` names a deleted file). Memory that only looks deleted is CRIU's own
business and left out: memfd files, shared anonymous memory (``/dev/zero``,
``/anon_hugepage``), SysV segments.
"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ferryman.host.procfs import PROC

DELETED: Final = " (deleted)"
NOT_GHOSTS: Final = ("/memfd:", "/dev/zero", "/SYSV", "/anon_hugepage")  # CRIU dumps these
DEFAULT_LIMIT: Final = 1 << 20  # CRIU's own --ghost-limit
MAX_LIMIT: Final = (1 << 32) - 1  # the RPC's field is 32 bits: CRIU refuses a larger ghost


def is_ghost_name(target: str) -> bool:
    """Whether a descriptor's or mapping's link target names a deleted file CRIU would copy
    as a ghost (pure)."""
    return (target.startswith("/") and target.endswith(DELETED)
            and not target.startswith(NOT_GHOSTS))


def _size(link: Path) -> int:
    """The size of the deleted regular file ``link`` resolves to, 0 if it is none."""
    with contextlib.suppress(OSError):
        if not is_ghost_name(str(link.readlink())):
            return 0
        st = link.stat()
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 0:
            return st.st_size
    return 0


def _links(pid: int, proc: Path) -> Iterable[Path]:
    base = proc / str(pid)
    with contextlib.suppress(OSError):
        yield from (base / "fd").iterdir()
    with contextlib.suppress(OSError):
        if DELETED in (base / "maps").read_text():
            yield from (base / "map_files").iterdir()


def largest_ghost(pids: Iterable[int], proc: Path = PROC) -> int:
    """Bytes of the largest deleted regular file the processes hold open or mapped (0: none)."""
    return max((_size(link) for pid in pids for link in _links(pid, proc)), default=0)


def ghost_limit(largest: int) -> int | None:
    """The ``--ghost-limit`` for a tree whose largest ghost file has ``largest`` bytes: None
    (CRIU's default) when that default holds it (pure)."""
    return None if largest <= DEFAULT_LIMIT else min(largest, MAX_LIMIT)
