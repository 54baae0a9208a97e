"""Start one zdtm static test in PID, IPC and UTS namespaces of its own, as zdtm.py's ``ns``
flavour does, but in the caller's network and mount namespaces (a node's network, files on
the storage both nodes share).

zdtm.py's ``ns_create`` (test/zdtm/lib/ns.c) also makes a network and a mount namespace and
pivots into a prepared root; we do its other half ourselves: unshare, fork the namespace's
init, give it the status socket on fd 255 and exec the test with ``ZDTM_NEWNS=2``. The test's
``ns_init`` (PID 1) then starts the test proper (which daemonizes as usual), reports 0 on the
socket once it runs, forwards SIGTERM to it later and exits with its result. We write the
init's PID (as the host sees it) to ``--pidfile`` and exit: the tree to migrate is rooted at
that init.

usage: python -m tests.zdtm.launch --pidfile FILE -- TEST_BINARY ARG...   (cwd: the run dir)
"""

from __future__ import annotations

import argparse
import ctypes
import os
import struct
import sys

CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
STATUS_FD = 255  # ns_init's status socket (test/zdtm/lib/ns.c)


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def _exec_init(sock: int, argv: list[str]) -> None:
    """In the child (PID 1 of the new namespace): become the test's ns_init."""
    os.setsid()
    os.dup2(sock, STATUS_FD)
    os.close(sock)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "TMPDIR": os.environ.get("TMPDIR", "/tmp"), "ZDTM_NEWNS": "2"}
    os.execve(argv[0], argv, env)


def launch(pidfile: str, argv: list[str]) -> int:
    """Start the test; 0 once it runs (its init's PID in ``pidfile``), else 1."""
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    _unshare(CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)
    pid = os.fork()
    if pid == 0:
        ours.close()
        try:
            _exec_init(theirs.detach(), argv)
        finally:
            os._exit(127)
    theirs.close()
    data = ours.recv(4)
    status = struct.unpack("i", data)[0] if len(data) == 4 else None
    if status != 0:
        print(f"launch: {argv[0]} did not start (status {status!r}); see its .out files",
              file=sys.stderr)
        return 1
    with open(pidfile + ".tmp", "w") as fh:
        fh.write(str(pid))
    os.rename(pidfile + ".tmp", pidfile)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.zdtm.launch")
    p.add_argument("--pidfile", required=True)
    p.add_argument("argv", nargs="+")
    args = p.parse_args()
    return launch(args.pidfile, args.argv)


if __name__ == "__main__":
    sys.exit(main())
