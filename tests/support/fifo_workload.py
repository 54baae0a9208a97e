#!/usr/bin/env python3
"""A migration test workload holding unread data in a FIFO (a named pipe) it made itself.

Standalone (no ferryman imports), like workload.py. It makes the FIFO with mknod(2), opens it
O_RDWR (so it is both ends), optionally sets its size (F_SETPIPE_SZ), fills it with --bytes
of a pattern derived from --seed without reading any of it, then beats a heartbeat counter.
With --split it opens the FIFO only for reading and a child process of its own opens it for
writing, fills it and sleeps: the two ends are in two processes of the tree.

SIGUSR1: read everything the FIFO holds now (non-blocking) and write a JSON status: the bytes
read so far, whether they are exactly the pattern it wrote (no byte lost, changed or doubled),
and the heartbeat. The status file is replaced atomically.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import signal
import stat
import termios
import time

F_SETPIPE_SZ = 1031
_flags = {"status": False}


def pattern(seed: str, n: int) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (n // len(block) + 1))[:n]


def drain(fd: int) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def fill(fd: int, pipe_size: int, data: bytes) -> None:
    if pipe_size:
        fcntl.fcntl(fd, F_SETPIPE_SZ, pipe_size)
    if os.write(fd, data) != len(data):
        raise SystemExit("the FIFO did not take all the data")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fifo", required=True)
    ap.add_argument("--bytes", type=int, required=True)
    ap.add_argument("--pipe-size", type=int, default=0)
    ap.add_argument("--split", action="store_true")
    ap.add_argument("--seed", default="fifo")
    ap.add_argument("--status", required=True)
    a = ap.parse_args()
    os.mknod(a.fifo, stat.S_IFIFO | 0o600)
    data = pattern(a.seed, a.bytes)
    if a.split:
        fd = os.open(a.fifo, os.O_RDONLY | os.O_NONBLOCK)  # no writer yet: does not block
        if os.fork() == 0:
            fill(os.open(a.fifo, os.O_WRONLY | os.O_NONBLOCK), a.pipe_size, data)
            while True:
                time.sleep(3600)
        while int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4), "little") < len(data):
            time.sleep(0.01)
    else:
        fd = os.open(a.fifo, os.O_RDWR | os.O_NONBLOCK)
        fill(fd, a.pipe_size, data)
    signal.signal(signal.SIGUSR1, lambda _s, _f: _flags.update(status=True))
    got = b""
    beats = 0
    while True:
        beats += 1
        if _flags["status"] or beats == 1:
            _flags["status"] = False
            got += drain(fd) if beats > 1 else b""
            tmp = f"{a.status}.tmp"
            with open(tmp, "w") as fh:
                json.dump({"phase": "running", "pid": os.getpid(), "beats": beats,
                           "fifo_bytes": len(got), "fifo_intact": got == data}, fh)
            os.replace(tmp, a.status)
        time.sleep(0.001)


if __name__ == "__main__":
    main()
