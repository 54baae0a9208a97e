"""PID control: choose the PID the next process gets, or start a program with an exact PID.

Two kernel interfaces, the same ones CRIU uses to restore processes under their old PIDs:

* ``/proc/sys/kernel/ns_last_pid`` holds the last PID handed out in the *writer's* PID
  namespace; writing N makes the next process (or thread) created in that namespace get
  N + 1 if it is free. It is racy: any process created in between takes the PID. CRIU
  used it until clone3 existed.
* ``clone3`` with ``set_tid`` (Linux >= 5.5) creates the child with the PID asked for, or
  fails with EEXIST. No race (see ``ferryman.host.clone3``).

Both need CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE over the PID namespace. The procfs root
is injected; it must be a procfs mounted for the caller's PID namespace (``unshare -p -f
--mount-proc``), otherwise ``/proc/PID`` would answer for another namespace.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from ferryman.errors import FerrymanError, PidControlError, PidTaken, UsageError
from ferryman.host import clone3

log = logging.getLogger(__name__)

PROC = Path("/proc")
Method = Literal["auto", "clone3", "ns_last_pid"]
METHODS: tuple[Method, ...] = ("auto", "clone3", "ns_last_pid")
_NO_CLONE3_SET_TID = frozenset({errno.ENOSYS, errno.E2BIG})  # pre-5.3 / seccomp; 5.3-5.4
_NEED_PRIVILEGE = "run as root (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in the PID namespace)"


# -- pure parts ---------------------------------------------------------------------------

def parse_pid_max(text: str) -> int:
    """The content of ``/proc/sys/kernel/pid_max`` as an int."""
    value = text.strip()
    if not value.isdigit() or int(value) < 2:
        raise PidControlError(f"unexpected kernel.pid_max {value!r}",
                              hint="is the procfs root a real procfs?")
    return int(value)


def check_pid(pid: int, pid_max: int) -> None:
    """A PID a process can have: ``1 <= pid < pid_max``."""
    if not 1 <= pid < pid_max:
        raise UsageError(f"PID {pid} is out of range",
                         hint=f"PIDs go from 1 to {pid_max - 1} (kernel.pid_max = {pid_max})")


def check_last_pid(last: int, pid_max: int) -> None:
    """A value for ns_last_pid whose successor ``last + 1`` is a valid PID."""
    if not 1 <= last < pid_max - 1:
        raise UsageError(f"cannot make the next PID {last + 1}",
                         hint=f"give N from 1 to {pid_max - 2}: the next PID is N+1 and "
                              f"must be below kernel.pid_max = {pid_max}")


def clone3_error(err: int, pid: int) -> FerrymanError | None:
    """Translate clone3's errno; ``None`` means the kernel lacks clone3 with set_tid."""
    if err in _NO_CLONE3_SET_TID:
        return None
    if err == errno.EEXIST:
        return PidTaken(pid)
    if err == errno.EPERM:
        return PidControlError(f"not allowed to choose PID {pid}", pid=pid, errno=err,
                               hint=_NEED_PRIVILEGE)
    if err == errno.EINVAL:
        return PidControlError(f"the kernel refused PID {pid}", pid=pid, errno=err,
                               hint="the PID must be below kernel.pid_max, and any PID "
                                    "other than 1 needs a live init in the namespace")
    return PidControlError(f"clone3 failed for PID {pid}: {os.strerror(err)}",
                           pid=pid, errno=err)


def _os_error(exc: OSError, what: str, *, pid: int | None = None) -> PidControlError:
    if isinstance(exc, PermissionError):
        return PidControlError(f"{what}: permission denied", pid=pid, errno=exc.errno,
                               hint=_NEED_PRIVILEGE)
    return PidControlError(f"{what}: {exc.strerror or exc}", pid=pid, errno=exc.errno)


# -- procfs -------------------------------------------------------------------------------

def read_pid_max(proc: Path = PROC) -> int:
    path = proc / "sys" / "kernel" / "pid_max"
    try:
        return parse_pid_max(path.read_text())
    except OSError as exc:
        raise _os_error(exc, f"cannot read {path}") from exc


def read_ns_last_pid(proc: Path = PROC) -> int:
    path = proc / "sys" / "kernel" / "ns_last_pid"
    try:
        return int(path.read_text().strip())
    except OSError as exc:
        raise _os_error(exc, f"cannot read {path}") from exc


def set_ns_last_pid(last: int, proc: Path = PROC) -> None:
    """Make the next process created in the caller's PID namespace get ``last + 1``.

    Racy by design: any process or thread created before ours takes that PID.
    """
    check_last_pid(last, read_pid_max(proc))
    _write_ns_last_pid(last, proc)


def _write_ns_last_pid(last: int, proc: Path) -> None:
    path = proc / "sys" / "kernel" / "ns_last_pid"
    try:
        with open(path, "w") as f:
            f.write(str(last))
    except OSError as exc:
        raise _os_error(exc, f"cannot write {path}", pid=last + 1) from exc
    log.debug("ns_last_pid = %d", last)


def pid_available(pid: int, proc: Path = PROC) -> bool:
    """True when no process or thread has ``pid`` in the PID namespace of ``proc``.

    A zombie still holds its PID, and ``/proc/TID`` resolves thread ids, so both count.
    """
    check_pid(pid, read_pid_max(proc))
    _check_own_namespace(proc)
    return not (proc / str(pid)).exists()


def _check_own_namespace(proc: Path) -> None:
    """Refuse a procfs mounted for another PID namespace: its PIDs are not ours."""
    try:
        seen = (proc / "self").readlink().name
    except OSError:
        seen = ""
    if seen != str(os.getpid()):
        raise PidControlError(f"{proc} belongs to another PID namespace",
                              hint="mount a procfs for this namespace, e.g. "
                                   "'unshare -p -f --mount-proc'")


def _thread_count(proc: Path) -> int:
    try:
        return sum(1 for _ in (proc / "self" / "task").iterdir())
    except OSError:
        return threading.active_count()


# -- spawning -----------------------------------------------------------------------------

def spawn_with_pid(argv: Sequence[str], pid: int, *, env: Mapping[str, str] | None = None,
                   method: Method = "auto", proc: Path = PROC) -> int:
    """Start ``argv`` as a child whose PID in the caller's PID namespace is exactly ``pid``.

    ``method="auto"`` uses clone3 with set_tid and falls back to ns_last_pid on kernels
    without it; the fallback checks that the child got ``pid`` and otherwise kills it and
    raises ``PidTaken``. Returns the PID; the caller must reap the child (``os.waitpid``).
    The clone3 path requires a single-threaded caller (see ``ferryman.host.clone3``).
    """
    if not argv:
        raise UsageError("no program to start", hint="give the command line to run")
    check_pid(pid, read_pid_max(proc))
    path = _resolve(argv[0], env)
    environ = dict(os.environ if env is None else env)
    if method in ("auto", "clone3"):
        child = _spawn_clone3(path, argv, environ, pid, proc, fallback=method == "auto")
        if child is not None:
            return child
    return _spawn_ns_last_pid(path, argv, environ, pid, proc)


def _resolve(program: str, env: Mapping[str, str] | None) -> str:
    if os.sep in program:
        return program
    search = (env if env is not None else os.environ).get("PATH", os.defpath)
    found = shutil.which(program, path=search)
    if found is None:
        raise PidControlError(f"{program}: command not found", errno=errno.ENOENT,
                              hint="give a full path or fix PATH")
    return found


def _spawn_clone3(path: str, argv: Sequence[str], env: Mapping[str, str], pid: int,
                  proc: Path, *, fallback: bool) -> int | None:
    if _thread_count(proc) > 1:
        raise PidControlError("clone3 from a multi-threaded process is unsafe", pid=pid,
                              hint="call spawn_with_pid before starting threads")
    try:
        child = clone3.spawn(path, argv, env, pid)
    except clone3.ExecFailed as exc:
        raise _os_error(exc, f"cannot execute {path}", pid=pid) from exc
    except OSError as exc:
        err = exc.errno or 0
        error = clone3_error(err, pid)
        if error is not None:
            raise error from exc
        if not fallback:
            raise PidControlError("this kernel has no clone3 with set_tid", pid=pid, errno=err,
                                  hint="Linux >= 5.5 without a seccomp filter on clone3 "
                                       "is needed; or use the ns_last_pid method") from exc
        log.info("clone3 with set_tid unavailable (%s); using ns_last_pid",
                 errno.errorcode.get(err, err))
        return None
    log.debug("clone3: started %s as PID %d", path, child)
    return child


def _spawn_ns_last_pid(path: str, argv: Sequence[str], env: Mapping[str, str], pid: int,
                       proc: Path) -> int:
    if not pid_available(pid, proc):
        raise PidTaken(pid)
    _write_ns_last_pid(pid - 1, proc)
    try:
        # posix_spawn creates exactly one task (vfork-like), which takes the next PID.
        child = os.posix_spawn(path, list(argv), env,
                               setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except OSError as exc:
        raise _os_error(exc, f"cannot execute {path}", pid=pid) from exc
    if child != pid:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        raise PidTaken(pid, got=child)
    log.debug("ns_last_pid: started %s as PID %d", path, child)
    return child
