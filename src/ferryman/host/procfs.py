"""Process facts read from /proc: identity, trees, memory. The procfs root is injectable.

A process is identified by ``(pid, start_time)`` so that a reused PID is never mistaken for
the process we meant (psutil's lesson).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from ferryman.errors import NoSuchProcess

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    pid: int
    start_time: int  # clock ticks since boot (/proc/PID/stat field 22)


# What reading /proc/PID raises once PID has exited: ENOENT after it is reaped, ESRCH while
# it is being reaped (its directory still lists but its task list and links are gone).
GONE = (FileNotFoundError, ProcessLookupError)


def _read(path: Path, pid: int) -> str:
    try:
        return path.read_text()
    except GONE as exc:
        raise NoSuchProcess(pid) from exc


def _stat_fields(pid: int, proc: Path) -> list[str]:
    text = _read(proc / str(pid) / "stat", pid)
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def identity(pid: int, proc: Path = PROC) -> ProcessIdentity:
    """The process's identity; raises NoSuchProcess when it does not exist."""
    if pid <= 0:
        raise NoSuchProcess(pid)
    fields = _stat_fields(pid, proc)
    return ProcessIdentity(pid=pid, start_time=int(fields[19]))


def is_alive(ident: ProcessIdentity, proc: Path = PROC) -> bool:
    """True when ``ident`` still names the same, not-yet-reaped, non-zombie process."""
    try:
        fields = _stat_fields(ident.pid, proc)
    except NoSuchProcess:
        return False
    return fields[0] not in ("Z", "X") and int(fields[19]) == ident.start_time


def state(pid: int, proc: Path = PROC) -> str:
    """The one-letter scheduler state (R, S, T, Z, ...)."""
    return _stat_fields(pid, proc)[0]


def children(pid: int, proc: Path = PROC) -> list[int]:
    """Direct children of every thread of ``pid``."""
    out: list[int] = []
    task_dir = proc / str(pid) / "task"
    try:
        tids = list(task_dir.iterdir())
    except GONE as exc:
        raise NoSuchProcess(pid) from exc
    for tid in tids:
        try:
            text = (tid / "children").read_text()
        except GONE:
            continue
        out.extend(int(c) for c in text.split())
    return out


def tree(pid: int, proc: Path = PROC) -> list[int]:
    """``pid`` and all its descendants, parents before children."""
    result = [pid]
    i = 0
    while i < len(result):
        with contextlib.suppress(NoSuchProcess):  # exited while we walked
            result.extend(children(result[i], proc))
        i += 1
    return result


def rss_bytes(pid: int, proc: Path = PROC) -> int:
    """Resident set size of one process, in bytes."""
    for line in _read(proc / str(pid) / "status", pid).splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # kernel threads and zombies have no VmRSS


def tree_rss_bytes(pid: int, proc: Path = PROC) -> int:
    total = 0
    for p in tree(pid, proc):
        try:
            total += rss_bytes(p, proc)
        except NoSuchProcess:
            continue
    return total


def pid_namespace(pid: int, proc: Path = PROC) -> str:
    """The PID namespace link text, e.g. ``pid:[4026531836]``."""
    try:
        return str((proc / str(pid) / "ns" / "pid").readlink())
    except GONE as exc:
        raise NoSuchProcess(pid) from exc


def _namespace(pid: int | str, name: str, proc: Path) -> str:
    """The link text of a process's namespace ``name`` (``pid`` may be ``"self"``), e.g.
    ``net:[4026531840]``; "" when the process is gone."""
    try:
        return str((proc / str(pid) / "ns" / name).readlink())
    except (FileNotFoundError, ProcessLookupError):
        return ""


def own_namespace(pid: int, name: str, proc: Path = PROC) -> bool:
    """Whether the process has a namespace ``name`` (``net``, ``time``, ...) other than this
    process's (also when it is gone); OSError when the links cannot be read."""
    return _namespace(pid, name, proc) != _namespace("self", name, proc)


def ns_pid(pid: int, proc: Path = PROC) -> int:
    """The process's PID in its own (innermost) PID namespace (``NSpid``'s last field)."""
    for line in _read(proc / str(pid) / "status", pid).splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return pid  # a kernel without NSpid has no nested PID namespaces to tell


def pending_signals(pid: int, proc: Path = PROC) -> int:
    """The signals pending for the thread or its process (``SigPnd`` | ``ShdPnd``), as a
    mask: signal N is bit N-1. NoSuchProcess when it is gone."""
    mask = 0
    for line in _read(proc / str(pid) / "status", pid).splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            mask |= int(line.split()[1], 16)
    return mask


def memory_available(proc: Path = PROC) -> int:
    for line in (proc / "meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def disk_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def read_sysctl(name: str, proc: Path = PROC) -> str:
    return (proc / "sys" / name.replace(".", "/")).read_text().strip()


def holders(directory: Path, proc: Path = PROC) -> list[int]:
    """Processes (other than this one) whose cwd or an open file lies in ``directory``."""
    inside = str(directory).rstrip("/") + "/"
    found = []
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            links = [str((d / "cwd").readlink())]
            with contextlib.suppress(OSError):
                links += [str(f.readlink()) for f in (d / "fd").iterdir()]
            if any(f"{link}/".startswith(inside) for link in links):
                found.append(int(d.name))
    return found
