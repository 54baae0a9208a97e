"""Run one system call inside another process, with ptrace (x86-64 only).

A userfaultfd acts on the memory of the process that created it, so to track a workload's
writes ferryman has the *workload* create one: :func:`open_fd_in` seizes one of its threads,
points it at a ``syscall`` instruction of its own vDSO with the call's number and arguments
in its registers, single-steps it, reads the result and puts every register back. The new
descriptor is then copied into the caller with ``pidfd_getfd`` and closed in the workload the
same way, so the workload holds no new file when this returns (CRIU could not dump one).

The thread is stopped for the few ptrace round trips only (tens of microseconds). A thread
interrupted inside a system call restarts it: the injected call runs with ``orig_rax = -1``
(no restart), and restoring the saved registers hands the kernel back its restart state.
While ferryman holds the thread every signal is blocked in it (``PTRACE_SETSIGMASK``), so
a thread taking a signal every few hundred microseconds cannot keep interrupting the single
step; the signals stay pending and arrive once its own mask is back. One that stopped the
thread before the mask was set is held back and delivered at the detach, so the workload
loses none.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from ferryman.errors import FerrymanError

PTRACE_GETREGS: Final = 12
PTRACE_SETREGS: Final = 13
PTRACE_SINGLESTEP: Final = 9
PTRACE_DETACH: Final = 17
PTRACE_SEIZE: Final = 0x4206
PTRACE_INTERRUPT: Final = 0x4207
PTRACE_EVENT_STOP: Final = 128
PTRACE_GETSIGMASK: Final = 0x420A
PTRACE_SETSIGMASK: Final = 0x420B
SIGSET_SIZE: Final = 8
ALL_SIGNALS: Final = 2**64 - 1
WALL: Final = 0x40000000
NR_CLOSE: Final = 3
NR_PIDFD_OPEN: Final = 434
NR_PIDFD_GETFD: Final = 438
PIDFD_THREAD: Final = os.O_EXCL
SYSCALL_INSN: Final = b"\x0f\x05"
MAX_STOPS: Final = 16
# user_regs_struct (x86-64): the slots we touch
RAX, RDX, RSI, RDI, R10, R8, R9, ORIG_RAX, RIP = 10, 12, 13, 14, 7, 9, 8, 15, 16
ARG_SLOTS: Final = (RDI, RSI, RDX, R10, R8, R9)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_libc.syscall.restype = ctypes.c_long

Regs = ctypes.c_ulonglong * 27
T = TypeVar("T")


class InjectError(FerrymanError):
    """A system call could not be run inside the workload (``pid``, ``errno`` say why)."""

    def __init__(self, pid: int, what: str, err: int, hint: str | None = None) -> None:
        super().__init__(f"PID {pid}: {what}: {os.strerror(err)}", hint=hint)
        self.pid = pid
        self.errno = err


class CallFailed(OSError):
    """The injected system call itself returned an error, inside the workload."""


def supported() -> bool:
    return platform.machine() == "x86_64"


def _ptrace(req: int, tid: int, addr: int = 0, data: int | ctypes.c_void_p = 0) -> None:
    if _libc.ptrace(req, tid, ctypes.c_void_p(addr), data) == -1:
        err = ctypes.get_errno()
        raise InjectError(tid, f"ptrace({req:#x})", err)


def raw_syscall(nr: int, *args: int) -> int:
    ret = int(_libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args)))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def syscall_address(pid: int) -> int:
    """The address of a ``syscall`` instruction in ``pid``'s vDSO (executable, never moved
    by the workload itself)."""
    where = thread_dir(pid)
    for line in (where / "maps").read_text().splitlines():
        if line.endswith("[vdso]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            with (where / "mem").open("rb", buffering=0) as mem:
                mem.seek(lo)
                code = mem.read(hi - lo)
            at = code.find(SYSCALL_INSN)
            if at >= 0:
                return lo + at
    raise InjectError(pid, "no syscall instruction in its [vdso]", errno.ENOENT)


def _wait_stop(tid: int) -> tuple[int, int]:
    """The next ptrace stop of ``tid``: (signal, ptrace event)."""
    _, status = os.waitpid(tid, WALL)
    if not os.WIFSTOPPED(status):
        raise InjectError(tid, "the thread exited while ferryman held it", errno.ESRCH)
    return os.WSTOPSIG(status), status >> 16


class _Seized:
    """One seized, stopped thread; :meth:`call` runs a system call in it. ``pending``: the
    signals that stopped it meanwhile, to deliver when it is let go."""

    def __init__(self, tid: int, insn: int) -> None:
        self.tid, self.insn = tid, insn
        self.saved = Regs()
        self.mask = ctypes.c_uint64()
        self.pending: list[int] = []

    def note(self, sig: int, event: int) -> bool:
        """Whether a stop is the end of our single step; holds back any signal."""
        if event == 0 and sig == signal.SIGTRAP:
            return True
        if event == 0:
            self.pending.append(sig)  # a signal-delivery stop: deliver it at the detach
        return False  # or the group stop PTRACE_INTERRUPT asked for, reported late

    def call(self, nr: int, *args: int) -> int:
        regs = Regs(*self.saved)
        regs[RAX], regs[ORIG_RAX], regs[RIP] = nr, 2**64 - 1, self.insn
        for slot, value in zip(ARG_SLOTS, args, strict=False):
            regs[slot] = value & (2**64 - 1)
        _ptrace(PTRACE_SETREGS, self.tid, 0, ctypes.addressof(regs))
        for _ in range(MAX_STOPS):
            _ptrace(PTRACE_SINGLESTEP, self.tid)
            if self.note(*_wait_stop(self.tid)):
                break
        else:
            raise InjectError(self.tid, "the thread kept stopping before the call ran",
                              errno.EAGAIN)
        _ptrace(PTRACE_GETREGS, self.tid, 0, ctypes.addressof(regs))
        ret = ctypes.c_long(regs[RAX]).value
        if -4096 < ret < 0:
            raise CallFailed(-ret, os.strerror(-ret))
        return ret


def live_thread(pid: int) -> int:
    """A thread of ``pid`` that can stop: the main one, unless it exited (a zombie leader
    whose other threads run on would never stop for ptrace)."""
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name)):
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if stat[stat.rindex(")") + 2] not in "ZX":
            return int(task.name)
    raise InjectError(pid, "no live thread", errno.ESRCH)


def thread_dir(pid: int) -> Path:
    """``/proc/PID/task/TID`` of a live thread: a zombie leader's own /proc files show no
    memory at all."""
    return Path(f"/proc/{pid}/task/{live_thread(pid)}")


def with_thread(pid: int, body: Callable[[_Seized], T], tid: int | None = None) -> T:
    """Seize thread ``tid`` of ``pid`` (default a live one), run ``body`` with it stopped,
    restore, detach."""
    insn = syscall_address(pid)
    tid = tid or live_thread(pid)
    th = _Seized(tid, insn)
    _ptrace(PTRACE_SEIZE, tid)
    try:
        _ptrace(PTRACE_INTERRUPT, tid)
        th.note(*_wait_stop(tid))
        _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(th.saved))
        _ptrace(PTRACE_GETSIGMASK, tid, SIGSET_SIZE, ctypes.addressof(th.mask))
        block = ctypes.c_uint64(ALL_SIGNALS)  # the kernel never blocks SIGKILL or SIGSTOP
        _ptrace(PTRACE_SETSIGMASK, tid, SIGSET_SIZE, ctypes.addressof(block))
        try:
            return body(th)
        finally:
            _ptrace(PTRACE_SETSIGMASK, tid, SIGSET_SIZE, ctypes.addressof(th.mask))
            _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(th.saved))
    finally:
        first, *more = th.pending or [0]
        _ptrace(PTRACE_DETACH, tid, 0, first)
        for sig in more:
            os.kill(pid, sig)


def open_fd_in(pid: int, nr: int, *args: int) -> int:
    """Run ``nr(*args)`` in ``pid``, which must return a new descriptor there; returns a
    copy of it in this process (O_CLOEXEC) and closes the workload's.

    Raises CallFailed with the errno the call returned inside the workload (EPERM: the kernel
    forbids it), InjectError when ptrace itself failed, OSError when taking the copy did.
    """
    tid = live_thread(pid)
    # a thread's own pidfd (PIDFD_THREAD, Linux 6.9+) when the leader is gone: pidfd_getfd
    # reads the files of the pidfd's task, and a zombie leader has none
    pidfd = raw_syscall(NR_PIDFD_OPEN, tid, PIDFD_THREAD if tid != pid else 0)
    try:
        def body(th: _Seized) -> int:
            theirs = th.call(nr, *args)
            try:
                return raw_syscall(NR_PIDFD_GETFD, pidfd, theirs, 0)
            finally:
                th.call(NR_CLOSE, theirs)
        return with_thread(pid, body, tid)
    finally:
        os.close(pidfd)
