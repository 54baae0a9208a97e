"""Start a program with an exact PID through the raw ``clone3`` system call (Linux >= 5.5).

``clone3`` takes a ``struct clone_args``; its ``set_tid`` field points at an array of PIDs,
the first for the innermost PID namespace. With ``set_tid_size = 1`` we choose the PID only
in the namespace the child is created in; the outer namespaces number it as usual. The
kernel answers ``EEXIST`` when that PID is in use, ``EINVAL`` when it is out of range or the
namespace has no init, ``EPERM`` without CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE over the
namespace, ``E2BIG`` on kernels 5.3-5.4 (clone3 without ``set_tid``) and ``ENOSYS`` before
5.3 or under seccomp filters such as Docker's default profile.

What is safe after a raw clone in a Python process
--------------------------------------------------
Without ``CLONE_VM`` the child is a copy-on-write copy of the caller, as after ``fork()``,
but nothing of what ``os.fork()`` does around it runs: no ``pthread_atfork`` handlers (so
glibc's malloc and stdio locks are not reset and its cached thread id is stale) and no
``PyOS_AfterFork_Child`` (so the interpreter still believes it is the parent). That is why:

* the caller must be **single-threaded**: a lock another thread held at the moment of the
  clone (malloc arena, stdio, logging) stays held forever in the child;
* the syscall is made through ``ctypes.PyDLL``, which keeps the GIL across the call, so the
  child wakes up holding the GIL like the parent;
* the cyclic garbage collector is disabled around the clone: it could otherwise run a
  parent object's finalizer in the child (flushing a buffer twice, closing a connection);
* every signal is blocked around the clone and ``CLONE_CLEAR_SIGHAND`` resets handled
  signals to their defaults in the child, so no Python signal handler ever runs there;
* the child does nothing but restore the default SIGPIPE/SIGXFSZ dispositions and the signal
  mask (as ``subprocess`` does), ``execve`` a path resolved by the parent, and on failure
  write the errno to a close-on-exec pipe and ``_exit(127)``. The parent reads that pipe:
  EOF means the exec succeeded.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import NoReturn

SYS_CLONE3 = 435  # x86_64 (and every architecture using the generic syscall table)
CLONE_CLEAR_SIGHAND = 0x1_0000_0000
CLONE_ARGS_SIZE_VER1 = 80  # up to set_tid_size (Linux 5.5); VER2 adds cgroup (5.7)
# flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
# set_tid_size: ten native-endian __aligned_u64 fields.
_CLONE_ARGS = struct.Struct("=10Q")
_EXEC_FAILED_CODE = 127
_SIGNALS_TO_RESTORE = (signal.SIGPIPE, signal.SIGXFSZ)  # Python ignores these; exec keeps that

_libc = ctypes.PyDLL(None, use_errno=True)  # the C library this process already has
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_size_t]


class ExecFailed(OSError):
    """The child was created but could not ``execve``; it has been reaped."""


def pack_clone_args(*, set_tid_addr: int, set_tid_size: int = 1,
                    exit_signal: int = signal.SIGCHLD, flags: int = CLONE_CLEAR_SIGHAND) -> bytes:
    """``struct clone_args`` (VER1, 80 bytes) for a fork-like clone with a chosen PID.

    ``stack = 0`` makes the child run on a copy of the caller's stack, as after ``fork()``.
    """
    return _CLONE_ARGS.pack(flags, 0, 0, 0, exit_signal, 0, 0, 0, set_tid_addr, set_tid_size)


def spawn(path: str, argv: Sequence[str], env: Mapping[str, str], pid: int) -> int:
    """Create a child with PID ``pid`` (in the caller's PID namespace) that execs ``path``.

    Returns the child's PID; the caller must reap it. Raises ``OSError`` with clone3's errno
    when no child was created, ``ExecFailed`` when the child could not exec. The caller must
    be single-threaded (see the module docstring).
    """
    set_tid = (ctypes.c_int32 * 1)(pid)
    packed = pack_clone_args(set_tid_addr=ctypes.addressof(set_tid))
    args = ctypes.create_string_buffer(packed, len(packed))
    fs_path = os.fsencode(path)
    fs_argv = [os.fsencode(a) for a in argv]
    fs_env = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        with _quiet_process() as old_mask:
            child = int(_syscall(SYS_CLONE3, ctypes.addressof(args), len(packed)))
            if child == 0:
                _exec_child(fs_path, fs_argv, fs_env, old_mask, write_fd)
            err = ctypes.get_errno()
        os.close(write_fd)
        write_fd = -1
        if child < 0:
            raise OSError(err, os.strerror(err))
        report = _read_all(read_fd)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if report:
        os.waitpid(child, 0)
        err = int.from_bytes(report[:4], "little")
        raise ExecFailed(err, os.strerror(err), path)
    return child


@contextlib.contextmanager
def _quiet_process() -> Iterator[set[int | signal.Signals]]:
    """Block every signal and pause the cyclic GC; yields the previous signal mask."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        yield old_mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if gc_was_enabled:
            gc.enable()


def _exec_child(path: bytes, argv: list[bytes], env: dict[bytes, bytes],
                mask: set[int | signal.Signals], report_fd: int) -> NoReturn:
    """Runs in the clone3 child: exec or die, never return into the parent's code."""
    try:
        for signum in _SIGNALS_TO_RESTORE:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.execve(path, argv, env)  # noqa: S606 - the parent resolved the path; no shell
    except OSError as exc:
        os.write(report_fd, (exc.errno or 0).to_bytes(4, "little"))
    finally:
        os._exit(_EXEC_FAILED_CODE)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 64):
        chunks.append(chunk)
    return b"".join(chunks)
