#!/usr/bin/env python3
"""A migration test workload serving on a unix datagram socket bound to a filesystem path.

Standalone (no ferryman imports), like workload.py. It binds --path, optionally keeps
--hold-file open (a file missing on the destination makes its restore fail there), and keeps
every datagram it receives. SIGUSR1: write a JSON status (the datagrams received so far, the
heartbeat) to --status, replaced atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket

_flags = {"status": True}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--hold-file", default="")
    a = ap.parse_args()
    held = open(a.hold_file) if a.hold_file else None  # noqa: SIM115 - kept open on purpose
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(a.path)
    signal.signal(signal.SIGUSR1, lambda _s, _f: _flags.update(status=True))
    got: list[str] = []
    beats = 0
    while True:
        beats += 1
        if select.select([sock], [], [], 0.001)[0]:
            got.append(sock.recv(4096).decode())
        if _flags["status"]:
            _flags["status"] = False
            tmp = f"{a.status}.tmp"
            with open(tmp, "w") as fh:
                json.dump({"phase": "running", "pid": os.getpid(), "beats": beats,
                           "received": got, "holding": held is not None}, fh)
            os.replace(tmp, a.status)


if __name__ == "__main__":
    main()
