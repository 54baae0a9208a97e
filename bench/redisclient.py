"""The S2 load client (``python -m bench.redisclient run|check``, inside node C).

``run``: ``--connections`` TCP connections to redis, each keeping ``--pipeline`` requests
in flight (GET and SET of random keys of the S2 key set, alternating; a SET writes the
key's own value again, so the data set stays checkable), until SIGTERM/SIGINT or
``--max-s``. Every GET answer is checked against the key's value. It records when requests
completed: the longest time in which *no* request completed on any connection (the
client-observed downtime), when that gap ended, and completions per ``--bin-ms`` bin (the
throughput timeline). Result JSON (atomically to ``--out``): ``t0``, ``bin_ms``, ``counts``,
``completed``, ``sent``, ``bad``, ``max_gap_ms``, ``max_gap_end``, ``completed_after_gap``,
``error``.

``check``: prints ``{"dbsize": N, "sampled": K, "bad": [keys …]}`` for ``DBSIZE`` and an
``MGET`` of ``--sample`` random keys, each compared with its value.
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import signal
import socket
import sys
import time
from collections import deque
from pathlib import Path

from bench.resp import Parser, ReplyError, command, key, longest_gap, value


class Stop(Exception):
    """SIGTERM/SIGINT: finish and write the result."""


def _stop(_sig: int, _frame: object) -> None:
    raise Stop


def _connect(to: str) -> socket.socket:
    host, port = to.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Conn:
    """One connection: the requests in flight (key number, or -1 for a SET) and a parser."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = Parser()
        self.pending: deque[int] = deque()
        self.n = 0

    def fill(self, depth: int, keys: int, rng: random.Random) -> int:
        out = []
        while len(self.pending) < depth:
            i = rng.randrange(keys)
            self.n += 1
            if self.n % 2:
                out.append(command(b"GET", key(i)))
                self.pending.append(i)
            else:
                out.append(command(b"SET", key(i), value(i)))
                self.pending.append(-1)
        if out:
            self.sock.sendall(b"".join(out))
        return len(out)


def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    bin_s = args.bin_ms / 1000
    result: dict[str, object] = {"to": args.to, "connections": args.connections,
                                 "pipeline": args.pipeline, "bin_ms": args.bin_ms,
                                 "error": None, "stopped": False}
    times: list[float] = []
    counts: list[int] = []
    sent = completed = bad = 0
    conns: list[Conn] = []
    t0 = time.time()
    sel = selectors.DefaultSelector()
    try:
        conns = [Conn(_connect(args.to)) for _ in range(args.connections)]
        for c in conns:
            c.sock.setblocking(True)
            sent += c.fill(args.pipeline, args.keys, rng)
            c.sock.setblocking(False)
            sel.register(c.sock, selectors.EVENT_READ, c)
        print("connected", flush=True)
        t0 = time.time()
        end = time.monotonic() + args.max_s
        while time.monotonic() < end:
            for sk, _ in sel.select(0.1):
                c = sk.data
                data = c.sock.recv(65536)
                if not data:
                    raise ConnectionError("redis closed the connection")
                now = time.time()
                replies = c.parser.feed(data)
                if not replies:
                    continue
                for reply in replies:
                    i = c.pending.popleft()
                    if (reply != "OK") if i < 0 else (reply != value(i)):
                        bad += 1
                completed += len(replies)
                times.append(now)
                b = int((now - t0) / bin_s)
                if b >= len(counts):
                    counts += [0] * (b + 1 - len(counts))
                counts[b] += len(replies)
                c.sock.setblocking(True)
                sent += c.fill(args.pipeline, args.keys, rng)
                c.sock.setblocking(False)
    except Stop:
        result["stopped"] = True
    except (OSError, ValueError, ReplyError, IndexError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for c in conns:
            c.sock.close()
    gap, gap_end = longest_gap(times)
    result.update(t0=t0, counts=counts, sent=sent, completed=completed, bad=bad,
                  max_gap_ms=round(gap * 1000, 3), max_gap_end=gap_end,
                  completed_after_gap=sum(1 for t in times if gap_end and t > gap_end),
                  last_completion=times[-1] if times else None)
    tmp = Path(f"{args.out}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.out)


def _ask(sock: socket.socket, parser: Parser, *args: bytes) -> object:
    sock.sendall(command(*args))
    while True:
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError("redis closed the connection")
        got = parser.feed(data)
        if got:
            return got[0]


def check(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    picks = sorted(rng.sample(range(args.keys), min(args.sample, args.keys)))
    with _connect(args.to) as sock:
        parser = Parser()
        size = _ask(sock, parser, b"DBSIZE")
        # MGET answers with an array: read its elements as replies of their own
        sock.sendall(command(b"MGET", *(key(i) for i in picks)))
        header = b""
        while not header.endswith(b"\r\n"):
            header += sock.recv(1)
        if header != b"*%d\r\n" % len(picks):
            raise ReplyError(f"MGET answered {header!r}")
        got: list[object] = []
        while len(got) < len(picks):
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("redis closed the connection")
            got += parser.feed(data)
    wrong = [key(i).decode() for i, v in zip(picks, got, strict=True) if v != value(i)]
    print(json.dumps({"dbsize": size, "sampled": len(picks), "bad": wrong[:20],
                      "n_bad": len(wrong)}))


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.redisclient", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("run", "check"))
    ap.add_argument("--to", required=True, help="IP:PORT of redis-server")
    ap.add_argument("--keys", type=int, required=True, help="size of the key set")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--pipeline", type=int, default=8, help="requests in flight per connection")
    ap.add_argument("--bin-ms", type=float, default=10)
    ap.add_argument("--max-s", type=float, default=900, help="run: stop by itself after this")
    ap.add_argument("--sample", type=int, default=1000, help="check: keys compared")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="run: the result JSON")
    args = ap.parse_args()
    if args.what == "run":
        if not args.out:
            ap.error("run needs --out")
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        run(args)
    else:
        try:
            check(args)
        except (OSError, ReplyError) as exc:
            print(f"redis check failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
