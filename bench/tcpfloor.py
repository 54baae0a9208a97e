"""One-stream TCP throughput between two namespace nodes (run inside each with nsenter).

``python -m bench.tcpfloor recv IP PORT`` accepts one connection, reads until EOF and answers
with the byte count; ``python -m bench.tcpfloor send IP PORT BYTES`` sends BYTES and prints
``{"bytes": N, "seconds": S}`` measured from connect to the receiver's answer.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time

CHUNK = 1 << 20


def receive(ip: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((ip, port))
        srv.listen(1)
        srv.settimeout(120)
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(120)
            buf = bytearray(CHUNK)
            total = 0
            while n := conn.recv_into(buf):
                total += n
            conn.sendall(struct.pack("<Q", total))


def send(ip: str, port: int, nbytes: int) -> None:
    data = memoryview(bytes(CHUNK))
    with socket.create_connection((ip, port), timeout=120) as s:
        t0 = time.monotonic()
        left = nbytes
        while left > 0:
            n = min(left, CHUNK)
            s.sendall(data[:n])
            left -= n
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < 8:
            part = s.recv(8 - len(answer))
            if not part:
                break
            answer += part
        seconds = time.monotonic() - t0
    (got,) = struct.unpack("<Q", answer)
    if got != nbytes:
        raise SystemExit(f"receiver got {got} bytes of {nbytes}")
    print(json.dumps({"bytes": nbytes, "seconds": seconds}))


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv")
    r.add_argument("ip")
    r.add_argument("port", type=int)
    s = sub.add_parser("send")
    s.add_argument("ip")
    s.add_argument("port", type=int)
    s.add_argument("nbytes", type=int)
    args = ap.parse_args()
    if args.cmd == "recv":
        receive(args.ip, args.port)
    else:
        send(args.ip, args.port, args.nbytes)


if __name__ == "__main__":
    main()
