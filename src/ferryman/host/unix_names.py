"""Keep a frozen tree's unix-socket names through a restore elsewhere on the same filesystem.

CRIU's restore unlinks the socket file at each name it restores and binds a new socket there
(criu/sk-unix.c, unlink_sk()). Where the destination sees the source's filesystem (network
namespaces of one host, storage both nodes mount) that takes the name from the source's live,
frozen socket; after a rollback the resumed workload was bound to nothing its clients could
reach (ENOENT, or ECONNREFUSED from the destination's dead socket file).

So before the restore the name gets a second hard link to the same socket file, in the same
directory (``park``); a rollback renames it back over whatever the name is then
(``give_back``); a commit removes it (``discard``).
"""

from __future__ import annotations

import contextlib
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ParkedName:
    path: Path  # the socket's name
    park: Path  # a second link to the same socket file, in the same directory
    dev: int
    ino: int


def park(paths: list[str], tag: str) -> list[ParkedName]:
    """A second link for every socket file among ``paths``; ``tag`` makes the links' names
    unique (the migration id). A name that cannot be linked is logged and left alone."""
    parked = []
    for text in paths:
        path = Path(text)
        link = path.with_name(f".{path.name}.ferryman-{tag}")
        try:
            st = path.lstat()
            if not stat.S_ISSOCK(st.st_mode):
                continue
            link.hardlink_to(path)
        except OSError as exc:
            log.warning("cannot keep unix socket name %s for a rollback: %s", path, exc)
            continue
        parked.append(ParkedName(path, link, st.st_dev, st.st_ino))
    return parked


def give_back(parked: list[ParkedName]) -> None:
    """After a rollback: every name is the source's socket file again."""
    for p in parked:
        try:
            st = p.path.lstat()
            ours = (st.st_dev, st.st_ino) == (p.dev, p.ino)
        except FileNotFoundError:
            ours = False
        try:
            if ours:
                p.park.unlink()
            else:
                p.park.replace(p.path)
                log.info("unix socket name %s given back to the source's socket", p.path)
        except OSError as exc:
            log.warning("cannot give unix socket name %s back (its link is %s): %s",
                        p.path, p.park, exc)


def discard(parked: list[ParkedName]) -> None:
    """After a commit: the names belong to the destination's sockets; the links go."""
    for p in parked:
        with contextlib.suppress(FileNotFoundError):
            p.park.unlink()
