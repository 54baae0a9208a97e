#!/usr/bin/env python3
"""A TCP echo server and a client that measures what it sees (standalone, no ferryman).

server: echoes every line on every connection (--ballast-mib: and holds that much memory, which
makes a cold migration's frozen window longer).
client: one connection; sends a numbered line every --interval-ms and waits for its answer
(for --duration seconds, or until --stop-file exists); writes JSON: sent, answered, lost,
duplicated or out-of-order answers, the longest gap between two answers, and the error if the
connection broke.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
import time


def serve(bind: str, ballast_mib: int = 0) -> None:
    ballast = bytearray(ballast_mib << 20)
    for i in range(0, len(ballast), 4096):  # touched: the pages are there to dump
        ballast[i] = 1
    host, port = bind.rsplit(":", 1)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(16)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is ls:
                conn, _ = ls.accept()
                sel.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                continue
            sock.sendall(data)


def client(to: str, interval_ms: float, duration: float, out: str,
           stop_file: str | None = None) -> None:
    host, port = to.rsplit(":", 1)
    result: dict[str, object] = {"sent": 0, "answered": 0, "bad": 0, "max_gap_ms": 0.0,
                                 "error": None}
    sock = socket.create_connection((host, int(port)), timeout=60)
    print("connected", flush=True)
    buf = b""
    last_answer = time.time()
    end = time.monotonic() + duration
    n = 0
    try:
        while time.monotonic() < end and not (stop_file and os.path.exists(stop_file)):
            n += 1
            sock.sendall(f"{n}\n".encode())
            result["sent"] = n
            while b"\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            now = time.time()
            result["max_gap_ms"] = max(float(result["max_gap_ms"]),  # type: ignore[arg-type]
                                       (now - last_answer) * 1000)
            last_answer = now
            if int(line) != n:
                result["bad"] = int(result["bad"]) + 1  # type: ignore[call-overload]
            result["answered"] = int(result["answered"]) + 1  # type: ignore[call-overload]
            time.sleep(interval_ms / 1000)
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    tmp = f"{out}.tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, out)


def late(to: str) -> None:
    """One exchange, then one more line when stdin says ``go``: prints how long its answer
    took (JSON), or the error."""
    host, port = to.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(b"early\n")
    answer = sock.recv(4096)
    print("connected", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    result: dict[str, object] = {"error": None}
    try:
        sock.sendall(b"late\n")
        answer = sock.recv(4096)
        result["answer"] = answer.decode(errors="replace")
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["delay_ms"] = (time.monotonic() - t0) * 1000
    print(json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--ballast-mib", type=int, default=0)
    lt = sub.add_parser("late")
    lt.add_argument("--to", required=True)
    c = sub.add_parser("client")
    c.add_argument("--to", required=True)
    c.add_argument("--interval-ms", type=float, default=10)
    c.add_argument("--duration", type=float, default=5)
    c.add_argument("--out", required=True)
    c.add_argument("--stop-file")
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args.bind, args.ballast_mib)
    elif args.cmd == "late":
        late(args.to)
    else:
        client(args.to, args.interval_ms, args.duration, args.out, args.stop_file)


if __name__ == "__main__":
    sys.exit(main())
