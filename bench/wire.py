"""Bytes on the wire: a node's interface counters around a migration (``/proc/net/dev``).

Every tool's page and image traffic from A to B crosses A's ``eth0``, so A's transmit
counter measures what each tool moved, including TCP and TLS overhead, the same way for
ferryman and for CRIU's commands by hand (which copy the remaining image files with ``cp``
on this one host: those bytes are added by the caller).
"""

from __future__ import annotations

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
