"""Redis's wire protocol (RESP 2), the S2 key set, and the client's completion timeline: pure.

Keys are ``key:%012d`` (so redis-benchmark's ``-r N`` GETs, ``key:__rand_int__``, hit them),
each value is derived from its key's number, so any sample can be checked anywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

Reply = bytes | int | str | None  # bulk string, integer, status ("OK"); None = nil


class ReplyError(Exception):
    """A ``-ERR …`` reply, or bytes that are not RESP."""


def key(i: int) -> bytes:
    return b"key:%012d" % i


def value(i: int) -> bytes:
    return b"val:%012d:%08x" % (i, (i * 2654435761) & 0xFFFFFFFF)


def command(*args: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out += [b"$%d\r\n" % len(a), a, b"\r\n"]
    return b"".join(out)


def load_commands(n: int, batch: int = 10_000) -> Iterator[bytes]:
    """``SET key value`` for keys 0 … n-1, in chunks (for ``redis-cli --pipe``)."""
    for start in range(0, n, batch):
        yield b"".join(command(b"SET", key(i), value(i))
                       for i in range(start, min(n, start + batch)))


class Parser:
    """Incremental RESP reply parser: ``feed(data)`` returns every reply now complete."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        out: list[Reply] = []
        pos = 0
        buf = self._buf
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            kind, line = buf[pos:pos + 1], buf[pos + 1:end]
            if kind == b"+":
                out.append(line.decode())
                pos = end + 2
            elif kind == b"-":
                raise ReplyError(line.decode(errors="replace"))
            elif kind == b":":
                out.append(int(line))
                pos = end + 2
            elif kind == b"$":
                size = int(line)
                if size < 0:
                    out.append(None)
                    pos = end + 2
                    continue
                if len(buf) < end + 2 + size + 2:
                    break
                out.append(buf[end + 2:end + 2 + size])
                pos = end + 2 + size + 2
            else:
                raise ReplyError(f"not a RESP reply: {buf[pos:pos + 20]!r}")
        self._buf = buf[pos:]
        return out


@dataclass(frozen=True)
class Timeline:
    """Completed requests per bin of ``bin_ms`` from ``t0`` (time.time())."""

    t0: float
    bin_ms: float
    counts: tuple[int, ...]

    def rate(self, start: float, end: float) -> float | None:
        """Requests per second completed between ``start`` and ``end`` (time.time()),
        counting whole bins that begin inside the window; None if it holds no whole bin."""
        width = self.bin_ms / 1000
        first = max(0, int((start - self.t0) / width + 0.999999))
        last = min(len(self.counts), int((end - self.t0) / width))
        if last <= first:
            return None
        return sum(self.counts[first:last]) / ((last - first) * width)


def longest_gap(times: list[float]) -> tuple[float, float | None]:
    """The longest interval between consecutive completion times (s) and when it ended."""
    gap, end = 0.0, None
    for a, b in itertools.pairwise(times):
        if b - a > gap:
            gap, end = b - a, b
    return gap, end
