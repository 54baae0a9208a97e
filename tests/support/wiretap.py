#!/usr/bin/env python3
"""Watch a node's network device: bytes sent to it from one address, per 100 ms, and
whether a byte string crossed the wire in the clear.

Standalone (no ferryman imports): run inside a node's namespace (``Node.popen``) as root.
An AF_PACKET socket sees every frame the device receives; frames whose IPv4 source is
``--source`` are counted by arrival time and searched for ``--needle`` (hex). SIGTERM ends
the watch and writes ``--out`` (JSON: ``buckets`` {tenth of a second: bytes}, ``total``,
``frames``, ``needle_seen``). ``--ready`` is created once the socket is bound. TCP segments
to ``--skip-port`` (the agent's control port) are left out: only the page stream counts.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
ETH_HLEN = 14


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", default="eth0")
    ap.add_argument("--source", required=True)
    ap.add_argument("--needle", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ready", type=Path, required=True)
    ap.add_argument("--skip-port", type=int, default=0)
    a = ap.parse_args()
    needle = bytes.fromhex(a.needle)
    src = socket.inet_aton(a.source)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    s.bind((a.dev, 0))
    s.settimeout(0.2)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    a.ready.touch()
    buckets: dict[int, int] = {}
    total = frames = 0
    seen = False
    buf = bytearray(1 << 17)
    view = memoryview(buf)
    while not stop["now"]:
        try:
            n, addr = s.recvfrom_into(buf)
        except TimeoutError:
            continue
        except InterruptedError:
            continue
        if addr[2] == socket.PACKET_OUTGOING or n < ETH_HLEN + 20:
            continue
        if buf[12:14] != b"\x08\x00" or bytes(view[ETH_HLEN + 12:ETH_HLEN + 16]) != src:
            continue
        ihl = (buf[ETH_HLEN] & 0x0F) * 4
        if buf[ETH_HLEN + 9] == 6 and a.skip_port:  # TCP: leave the control port out
            dport = int.from_bytes(buf[ETH_HLEN + ihl + 2:ETH_HLEN + ihl + 4], "big")
            if dport == a.skip_port:
                continue
        tenth = int(time.monotonic() * 10)
        buckets[tenth] = buckets.get(tenth, 0) + n
        total += n
        frames += 1
        if not seen and buf.find(needle, 0, n) >= 0:
            seen = True
    a.out.write_text(json.dumps({"buckets": buckets, "total": total, "frames": frames,
                                 "needle_seen": seen}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
