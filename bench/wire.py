"""Bytes on the wire: a node's interface counters around a migration (``/proc/net/dev``).

Every tool's page and image traffic from A to B crosses A's ``eth0``, so A's transmit
counter measures what each tool moved, including TCP and TLS overhead, the same way for
ferryman and for CRIU's commands by hand (which copy the remaining image files with ``cp``
on this one host: those bytes are added by the caller).
"""

from __future__ import annotations

import threading
import time

from tests.support.netns import Node

from bench.proc import BenchError


def parse_net_dev(text: str, dev: str) -> tuple[int, int]:
    """(received, transmitted) bytes of ``dev`` in the text of ``/proc/net/dev``."""
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name.strip() == dev:
            cols = rest.split()
            if len(cols) < 9:
                break
            return int(cols[0]), int(cols[8])
    raise BenchError(f"no counters for {dev} in /proc/net/dev")


def tx_bytes(node: Node, dev: str) -> int:
    """Bytes ``node`` has transmitted on ``dev`` so far."""
    return parse_net_dev(node.run("cat", "/proc/net/dev").stdout, dev)[1]


def steady_rate(samples: list[tuple[float, int]], lo: float = 0.1, hi: float = 0.9
                ) -> float | None:
    """Bytes/s while the bulk went out: ``samples`` are (time s, transmit counter) in time
    order; the rate between the first samples at which ``lo`` and ``hi`` of the total
    increase had been sent (the pre-flight's and restore's trickles at either end left out).
    None with fewer than two samples, no traffic, or both fractions in one sample step."""
    if len(samples) < 2:
        return None
    b0 = samples[0][1]
    total = samples[-1][1] - b0
    if total <= 0:
        return None
    start = next(s for s in samples if s[1] - b0 >= lo * total)
    end = next(s for s in samples if s[1] - b0 >= hi * total)
    if end[0] <= start[0]:
        return None
    return (end[1] - start[1]) / (end[0] - start[0])


class TxSampler:
    """A's transmit counter on ``dev`` every ``every`` s in a thread, read through
    ``/proc/PID/net/dev`` of a process that lives in A's network namespace (no fork per
    sample): ``start()`` … ``stop()`` → ``samples``."""

    def __init__(self, pid: int, dev: str, every: float = 0.02) -> None:
        self.path = f"/proc/{pid}/net/dev"
        self.dev = dev
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> int:
        with open(self.path) as fh:
            return parse_net_dev(fh.read(), self.dev)[1]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._read()))
            self._stop.wait(self.every)

    def start(self) -> TxSampler:
        self.samples.append((time.monotonic(), self._read()))
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self._read()))
        return self.samples
