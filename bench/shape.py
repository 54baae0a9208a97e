"""A shaped link: a ``tc`` token-bucket rate limit on node A's veth pair, both directions.

Every byte A sends (pages, images, control, the clients' answers) leaves through A's
``eth0`` and every byte it receives arrives through the switch side of the same veth pair
(``<tag>ap`` in the switch namespace), so a ``tbf`` qdisc at the root of both ends makes A's
link a full-duplex link of that rate, for every tool alike. The TCP floor measured while
the shaping is on shows the rate actually achieved (``bench.floors.tcp``).
"""

from __future__ import annotations

from tests.support.netns import NETNS_DIR, Topology, sh

from bench.proc import BenchError

# The bucket must hold at least one timer tick's worth of bytes at the rate (HZ may be
# 100), and never less than a 64 KiB GSO segment, or tbf cannot reach the rate.
MIN_BURST = 256 * 1024
LATENCY_MS = 50


def burst_bytes(mbit: int) -> int:
    """tbf's bucket for ``mbit`` Mbit/s: 10 ms worth of bytes, at least MIN_BURST."""
    return max(MIN_BURST, mbit * 125_000 // 100)


def _ends(topo: Topology, node: str) -> list[list[str]]:
    """argv prefixes for ``tc`` on both ends of ``node``'s veth pair."""
    n = topo[node]
    sw = ["nsenter", f"--net={NETNS_DIR / topo.switch}", "--"]
    return [[*n.argv("tc"), "qdisc", "{verb}", "dev", n.veth],
            [*sw, "tc", "qdisc", "{verb}", "dev", f"{n.name}p"]]


def shape(topo: Topology, mbit: int, node: str = "a") -> None:
    """Limit ``node``'s link to ``mbit`` Mbit/s each way (replacing any limit)."""
    for end in _ends(topo, node):
        argv = [w.replace("{verb}", "replace") for w in end]
        res = sh(*argv, "root", "tbf", "rate", f"{mbit}mbit", "burst",
                 str(burst_bytes(mbit)), "latency", f"{LATENCY_MS}ms", check=False)
        if res.returncode != 0:
            raise BenchError(f"tc could not shape {node}'s link to {mbit} Mbit/s: "
                             f"{res.stderr.strip()}")


def unshape(topo: Topology, node: str = "a") -> None:
    """Remove the limit from ``node``'s link (nothing to do when there is none)."""
    for end in _ends(topo, node):
        sh(*[w.replace("{verb}", "del") for w in end], "root", check=False)
