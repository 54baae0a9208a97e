"""What a workload needs from a node, read from /proc without disturbing it.

:func:`inspect_workload` collects, for a process tree: every process and thread id, whether it
has PID/time/network namespaces of its own, its resident memory, the files it uses (open file
descriptors, working directories, executables and file mappings) with their type, size,
mtime and identity, whether the workload itself is changing them (open for writing, a shared
writable mapping, or a stat that moved between two reads), its inet sockets (matched by
inode against ``/proc/PID/net/*`` of its own network namespace) and the terminals it holds in
this node's /dev/pts (CRIU restores each at the same index, which must be free there).
Reading /proc never stops the workload.

:func:`stat_path` is the other side of the file check: what the same path is on this node.
The procfs root is injectable; parsers are pure.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from ferryman.errors import NoSuchProcess
from ferryman.host import filelocks, procfs, unix_peers
from ferryman.host.netinfo import InetSocket, read_inet_sockets

PROC = procfs.PROC

FILE_KINDS: Final = ("exe", "cwd", "fd", "map")  # by priority when one path is used twice
FILE_TYPES: Final = ("f", "d", "c", "b", "p", "s", "l", "o")
SKIPPED_PREFIXES: Final = ("/proc/", "/sys/", "/dev/pts/", "/dev/ptmx")
DELETED: Final = " (deleted)"
PTS: Final = "/dev/pts"
PTY_MASTERS: Final = ("/dev/ptmx", "/dev/pts/ptmx")
MAX_PTY: Final = 1 << 20  # the kernel's devpts indexes stay below this


@dataclass(frozen=True, slots=True)
class FileStat:
    """A file's type (one letter of :data:`FILE_TYPES`), size, mtime and identity: its
    filesystem id (``statvfs`` f_fsid, 0 when the filesystem has none), device and inode."""

    ftype: str
    size: int
    mtime_ns: int
    fsid: int = 0
    dev: int = 0
    ino: int = 0

    def same_file(self, other: FileStat) -> bool:
        """Both name one file: the same inode of the same filesystem, as shared storage (or two
        nodes on one machine) shows it. Only ever evidence that a difference in size or mtime
        is the workload's own writing; CRIU still checks the size when it restores."""
        if self.ino == 0 or self.ino != other.ino:
            return False
        return (self.fsid != 0 and self.fsid == other.fsid) or self.dev == other.dev


@dataclass(frozen=True, slots=True)
class FileRef:
    """A path the workload uses: as ``exe``, ``cwd``, an open ``fd`` or a file ``map``."""

    path: str
    kind: str
    stat: FileStat
    live: bool = False  # the workload is changing it: compared by CRIU at the freeze, not now


@dataclass(frozen=True, slots=True)
class WorkloadFacts:
    pid: int
    comm: str
    processes: int
    ids: tuple[int, ...]  # every process and thread id, as the source's PID namespace sees them
    own_pid_ns: bool
    own_net_ns: bool
    own_time_ns: bool
    rss_bytes: int
    files: tuple[FileRef, ...]
    sockets: tuple[InetSocket, ...]
    deleted_files: int = 0  # open but unlinked: CRIU carries them in the images (ghost files)
    ptys: tuple[int, ...] = ()  # indexes of the terminals it holds in this node's /dev/pts
    locked_files: tuple[str, ...] = ()  # open files it holds locks on (host/filelocks.py)
    unix_peers: tuple[str, ...] = ()  # datagram sockets outside it it is connected to, by name


def file_type(mode: int) -> str:
    for test, letter in ((stat.S_ISREG, "f"), (stat.S_ISDIR, "d"), (stat.S_ISCHR, "c"),
                         (stat.S_ISBLK, "b"), (stat.S_ISFIFO, "p"), (stat.S_ISSOCK, "s"),
                         (stat.S_ISLNK, "l")):
        if test(mode):
            return letter
    return "o"


def stat_path(path: str | Path) -> FileStat | None:
    """What ``path`` is on this node (following symlinks), or None when it does not exist."""
    try:
        st = Path(path).stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    fsid = 0
    with contextlib.suppress(OSError):
        fsid = os.statvfs(path).f_fsid
    return FileStat(file_type(st.st_mode), size, st.st_mtime_ns, fsid, st.st_dev, st.st_ino)


def opened_for_writing(fdinfo_text: str) -> bool:
    """An fd's ``flags:`` line in /proc/PID/fdinfo/FD (octal) has O_WRONLY or O_RDWR."""
    for line in fdinfo_text.splitlines():
        if line.startswith("flags:"):
            with contextlib.suppress(ValueError, IndexError):
                return int(line.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY
    return False


def parse_nspid(status_text: str) -> tuple[int, ...]:
    """The ``NSpid:`` line of /proc/PID/status: the PID in each namespace, outermost first."""
    for line in status_text.splitlines():
        if line.startswith("NSpid:"):
            return tuple(int(x) for x in line.split()[1:])
    return ()


def parse_map_paths(maps_text: str) -> dict[str, bool]:
    """The distinct file paths mapped in /proc/PID/maps (no ``[heap]``, no deleted files), each
    with whether some mapping of it is shared and writable (the workload writes the file)."""
    seen: dict[str, bool] = {}
    for line in maps_text.splitlines():
        cols = line.split(maxsplit=5)
        if len(cols) == 6 and cols[5].startswith("/") and not cols[5].endswith(DELETED):
            perms = cols[1]
            writes = len(perms) == 4 and perms[1] == "w" and perms[3] == "s"
            seen[cols[5]] = seen.get(cols[5], False) or writes
    return seen


def parse_tty_index(fdinfo_text: str) -> int | None:
    """The ``tty-index:`` of a pty master's /proc/PID/fdinfo/FD, else None."""
    for line in fdinfo_text.splitlines():
        if line.startswith("tty-index:"):
            with contextlib.suppress(ValueError, IndexError):
                return int(line.split()[1])
    return None


def pts_index(link: str) -> int | None:
    """N of a pty slave's fd link ``/dev/pts/N``, else None."""
    head, _, tail = link.rpartition("/")
    if head == PTS and tail.isdigit():
        return int(tail)
    return None


def socket_inode(link: str) -> int | None:
    """The inode in a ``socket:[12345]`` fd link, else None."""
    if link.startswith("socket:[") and link.endswith("]"):
        with contextlib.suppress(ValueError):
            return int(link[8:-1])
    return None


def wanted_path(link: str) -> bool:
    """A link target that names a file the destination must have too."""
    return link.startswith("/") and not link.endswith(DELETED) and not link.startswith(
        SKIPPED_PREFIXES)


class _Collector:
    def __init__(self, proc: Path) -> None:
        self.proc = proc
        self.files: dict[str, FileRef] = {}
        self.written: set[str] = set()
        self.inodes: set[int] = set()
        self.deleted = 0
        self.ptys: set[int] = set()
        self.locked: set[str] = set()  # open files the tree holds a lock through
        try:
            self.pts_dev: int | None = Path(PTS).stat().st_dev  # this node's devpts instance
        except OSError:
            self.pts_dev = None

    def add(self, path: str, kind: str, target: Path, *, writes: bool = False) -> None:
        if writes:
            self.written.add(path)
        old = self.files.get(path)
        if old is not None and FILE_KINDS.index(old.kind) <= FILE_KINDS.index(kind):
            return
        st = stat_path(target)
        if st is not None:
            self.files[path] = FileRef(path, kind, st)

    def link(self, path: Path) -> str | None:
        try:
            return str(path.readlink())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None

    def process(self, pid: int) -> None:
        base = self.proc / str(pid)
        for kind in ("exe", "cwd"):
            target = self.link(base / kind)
            if target is not None and wanted_path(target):
                self.add(target, kind, base / kind)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for fd in (base / "fd").iterdir():
                target = self.link(fd)
                if target is None:
                    continue
                inode = socket_inode(target)
                if inode is not None:
                    self.inodes.add(inode)
                elif target.endswith(DELETED) and target.startswith("/"):
                    self.deleted += 1
                elif target.startswith(PTS) or target in PTY_MASTERS:
                    self.pty(base, fd, target)
                elif wanted_path(target):
                    writes, locked = self.fd_facts(base, fd.name)
                    self.add(target, "fd", fd, writes=writes)
                    if locked:
                        self.locked.add(target)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for path, writes in parse_map_paths((base / "maps").read_text()).items():
                if wanted_path(path):
                    self.add(path, "map", base / "root" / path.lstrip("/"), writes=writes)

    def pty(self, base: Path, fd: Path, target: str) -> None:
        """A terminal the tree holds, when it is one of this node's /dev/pts: a slave by its
        device's filesystem, a master by the /dev/pts its process sees (a container's own
        devpts has indexes of its own, which nothing here can take)."""
        index = pts_index(target)
        try:
            if index is not None:
                here = fd.stat().st_dev == self.pts_dev
            else:
                index = parse_tty_index((base / "fdinfo" / fd.name).read_text())
                here = (base / "root" / PTS.lstrip("/")).stat().st_dev == self.pts_dev
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return
        if here and index is not None and index < MAX_PTY:
            self.ptys.add(index)

    def fd_facts(self, base: Path, fd: str) -> tuple[bool, bool]:
        """Whether the tree writes through the fd, and holds a lock through it (its fdinfo
        lists the locks: host/filelocks.py)."""
        try:
            text = (base / "fdinfo" / fd).read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False, False
        return opened_for_writing(text), filelocks.holds_lock(text)

    def refs(self) -> tuple[FileRef, ...]:
        """The files, each marked live when the tree writes it or its stat moved since it was
        first read (someone is writing it now: no pre-flight comparison can hold)."""
        out = []
        for ref in sorted(self.files.values(), key=lambda f: f.path):
            again = stat_path(ref.path)
            moved = again is not None and (again.size, again.mtime_ns) != (
                ref.stat.size, ref.stat.mtime_ns)
            out.append(replace(ref, live=ref.path in self.written or moved))
        return tuple(out)


def _thread_ids(proc: Path, pids: Iterable[int]) -> list[int]:
    ids: list[int] = []
    for pid in pids:
        try:
            ids.extend(int(t.name) for t in (proc / str(pid) / "task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return sorted(set(ids))


def inspect_workload(pid: int, proc: Path = PROC) -> WorkloadFacts:
    """Everything the pre-flight check needs to know about the tree rooted at ``pid``."""
    ident = procfs.identity(pid, proc)  # NoSuchProcess first
    pids = procfs.tree(pid, proc)
    status_text = (proc / str(pid) / "status").read_text()
    comm = (proc / str(pid) / "comm").read_text().strip()
    nspid = parse_nspid(status_text)
    collector = _Collector(proc)
    for p in pids:
        collector.process(p)
    sockets = [s for s in read_inet_sockets(proc / str(pid) / "net")
               if s.inode in collector.inodes]
    if not procfs.is_alive(ident, proc):
        raise NoSuchProcess(pid)
    return WorkloadFacts(
        pid=pid,
        comm=comm,
        processes=len(pids),
        ids=tuple(_thread_ids(proc, pids)),
        own_pid_ns=len(nspid) > 1 and nspid[-1] == 1,
        own_net_ns=procfs.own_namespace(pid, "net", proc),
        own_time_ns=procfs.own_namespace(pid, "time", proc),
        rss_bytes=procfs.tree_rss_bytes(pid, proc),
        files=collector.refs(),
        sockets=tuple(sorted(set(sockets), key=lambda s: (s.proto, s.local_port))),
        deleted_files=collector.deleted,
        ptys=tuple(sorted(collector.ptys)),
        locked_files=tuple(sorted(collector.locked)),
        unix_peers=tuple(_unix_peers(collector.inodes - {s.inode for s in sockets})),
    )


def _unix_peers(inodes: set[int]) -> list[str]:
    """The named datagram sockets outside the tree its other sockets are connected to
    (host/unix_peers.py); the namespace's unix sockets are read only when it has any."""
    return unix_peers.tree_external_peers(inodes) if inodes else []
