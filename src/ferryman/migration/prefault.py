"""How much memory a destination makes resident before the freeze (``serve --prefault``).

Pure: the node's facts come in (host/prefault.py finds them). What the frozen window will
take on the destination: the restored tree's memory (its RSS) and, when the pages arrive
while the workload is frozen (cold: all of them), their page cache as well. Pre-copy's
earlier image sets arrive while it runs; post-copy's pages after it resumes; a streamed cold
restore's go straight into the tree while it is frozen (its RSS, no page cache).

``auto`` does it only on a node whose free memory goes back to its hypervisor, and only
from ``AUTO_MIN_BYTES``: what a node freed in the last seconds is still resident (the
reporting waits two seconds and takes only 2 MiB blocks), and on the test host 0.5 GiB
in flight never paid for it (cold 256 MiB: downtime 1.11x by hand, 2026-12-05) while 2 GiB
did (cold 1 GiB: 2.64x, its restore 1.3-2.3 s instead of 0.4 s). ``on`` always, ``off`` never.

With ``auto``, each chunk's making resident is timed (:func:`came_resident`): memory the
hypervisor holds comes in at GB/s, memory it took back at a few hundred MB/s (2026-12-06,
the test host, 64 MiB on one thread: 2.1-3.1 GiB/s on an idle node, 0.34-0.38 GiB/s past
the resident share of its free memory, about 1.3 GiB while 5 GiB were held). When every
chunk came quickly, the frozen window would have found that memory resident as well, and
holding it would only cost: the reserve is given back at once, before the Ready, not in the
frozen window. Cold 1 GiB, alternating agents, 5 pairs, idle node: held into the frozen
window, downtime median 1466 ms; no prefault 1263 ms (the release before the restore, an
munmap of 1 GiB, was in it). With 5 GiB held by another process, 3 pairs: downtime
1397-2024 ms with the reserve held, 2998-4171 ms with none. (A timing of the first 64 MiB
alone cannot tell: it came at 2+ GiB/s in that state too.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

SETTINGS: Final = ("auto", "on", "off")
AUTO_MIN_BYTES: Final = 1 << 30
RESIDENT_BYTES_PER_S: Final = 10**9  # a chunk made resident this quickly was resident
KEEP_FREE_BYTES: Final = 512 << 20  # never made resident: the node's own needs meanwhile


@dataclass(frozen=True, slots=True)
class Prefault:
    """``total`` bytes to make resident; ``pages`` of them given back when the page server
    starts (the images' page cache), the rest right before the restore."""

    total: int = 0
    pages: int = 0


def plan_prefault(setting: str, *, reported: bool, rss_bytes: int, pages_frozen: bool,
                  lazy: bool, available: int) -> Prefault:
    """What to make resident for one migration: ``rss_bytes`` of the tree, twice when
    ``pages_frozen`` (cold), none when ``lazy``; at most half of ``available`` less
    ``KEEP_FREE_BYTES`` (the size is the peer's word, and an agent runs up to four
    migrations at once: together they never take what the node has)."""
    if setting not in SETTINGS:
        raise ValueError(f"prefault setting {setting!r} is not one of {SETTINGS}")
    if setting == "off" or lazy or rss_bytes <= 0:
        return Prefault()
    pages = rss_bytes if pages_frozen else 0
    want = rss_bytes + pages
    if setting == "auto" and (not reported or want < AUTO_MIN_BYTES):
        return Prefault()
    total = max(0, min(want, (available - KEEP_FREE_BYTES) // 2))
    return Prefault(total=total, pages=min(pages, total))


def came_resident(timings: Iterable[tuple[int, float]]) -> bool:
    """Whether every chunk made resident (its bytes, the seconds it took) came from memory
    the hypervisor still held: quicker than ``RESIDENT_BYTES_PER_S`` each. Then the frozen
    window would find it resident without a reserve. No chunk: nothing is known (False)."""
    seen = False
    for nbytes, seconds in timings:
        if nbytes < RESIDENT_BYTES_PER_S * max(seconds, 0.0):
            return False
        seen = True
    return seen
