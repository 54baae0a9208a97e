#!/usr/bin/env python3
"""The S3 client: one TCP connection, a numbered request every ``--interval-ms``, until stopped.

Standalone (run inside node C with nsenter). Like tests/support/echo.py's client, it waits for
each answer before the next request and records the longest gap between two answers; it runs
until SIGTERM/SIGINT (or ``--max-s``) instead of for a fixed time, so a migration of unknown
length always happens while it talks, and it also says *when* the longest gap ended (wall
clock) and how many answers came after it. Result JSON (written atomically to ``--out``):
``sent``, ``answered``, ``bad`` (wrong number), ``max_gap_ms``, ``max_gap_end`` (time.time()),
``answered_after_max_gap``, ``pending`` (a request was unanswered when stopped), ``error``.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import time
from pathlib import Path


class Stop(Exception):
    """SIGTERM/SIGINT: finish and write the result."""


def _stop(_sig: int, _frame: object) -> None:
    raise Stop


def talk(to: str, interval_ms: float, max_s: float, out: str) -> None:
    host, port = to.rsplit(":", 1)
    result: dict[str, object] = {"to": to, "interval_ms": interval_ms, "sent": 0,
                                 "answered": 0, "bad": 0, "max_gap_ms": 0.0,
                                 "max_gap_end": None, "answered_after_max_gap": 0,
                                 "pending": False, "error": None, "stopped": False}
    sent = answered = bad = after = 0
    max_gap = 0.0
    max_gap_end: float | None = None
    sock: socket.socket | None = None
    try:
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print("connected", flush=True)
        buf = b""
        last = time.time()
        end = time.monotonic() + max_s
        while time.monotonic() < end:
            sent += 1
            sock.sendall(f"{sent}\n".encode())
            while b"\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            now = time.time()
            answered += 1
            after += 1
            if now - last > max_gap:
                max_gap, max_gap_end, after = now - last, now, 0
            last = now
            if int(line) != sent:
                bad += 1
            time.sleep(interval_ms / 1000)
    except Stop:
        result["stopped"] = True
    except (OSError, ValueError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if sock is not None:
            sock.close()
    result.update(sent=sent, answered=answered, bad=bad, max_gap_ms=round(max_gap * 1000, 3),
                  max_gap_end=max_gap_end, answered_after_max_gap=after,
                  pending=sent > answered)
    tmp = Path(f"{out}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--to", required=True, help="IP:PORT of the echo server")
    ap.add_argument("--interval-ms", type=float, default=10)
    ap.add_argument("--max-s", type=float, default=600, help="stop by itself after this long")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    talk(args.to, args.interval_ms, args.max_s, args.out)


if __name__ == "__main__":
    main()
