"""``--compress``: the measurements behind the choice, made before the Plan is sent.

``auto`` measures what ``migration/compress.py:choose`` needs: the link (``--link-mbps``, a
rate remembered from a recent check or migration to the same destination, or the
pre-flight's link test over the control connection, or ``--mode auto``'s if it ran:
agent/linkrate.py; capped by ``--max-bandwidth``), and how a sample of the workload's memory
compresses with LZ4 on this node's CPU, and how fast (``host/memsample.py``: 32 x 256 KiB
from its private writable mappings). ``on`` and ``off`` measure nothing. With a mode given
(not ``--mode auto``), both are measured while the pre-flight's dry run dumps
(:func:`measure`, gate.py's ``alongside``): neither needs the verdict, and the connection is
idle meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import lz4.block  # type: ignore[import-untyped]

from ferryman.agent import pagerelay
from ferryman.agent.linkrate import link_rate
from ferryman.agent.pagerelay import RelayError
from ferryman.agent.role import SourceRole
from ferryman.agent.steps import timed
from ferryman.errors import FerrymanError
from ferryman.host import memsample
from ferryman.migration.compress import MIN_RATIO, Compress, CompressChoice, choose
from ferryman.migration.plan import Plan
from ferryman.mode import Mode
from ferryman.pki import tls


def lz4_rate(pieces: list[bytes]) -> tuple[float, float] | None:
    """(raw / compressed, raw bytes per second) of LZ4 over ``pieces``; None if empty."""
    raw = sum(len(p) for p in pieces)
    if raw == 0:
        return None
    t0 = time.perf_counter()
    packed = sum(min(len(lz4.block.compress(p, store_size=False)), len(p)) for p in pieces)
    took = max(time.perf_counter() - t0, 1e-6)
    return raw / max(packed, 1), raw / took


class Ahead:
    """What :func:`measure` found while the pre-flight's dry run dumped (gate.py), for
    :func:`choose_compression`: (ratio, rate) of the sample, once ``done``."""

    def __init__(self) -> None:
        self.done = False
        self.sample: tuple[float, float] | None = None


def measures_ahead(m: SourceRole, mode: Mode, setting: Compress) -> bool:
    """``auto`` with a mode given that could compress: what it needs can be measured
    during the dry run (nothing of it depends on the verdict)."""
    return (setting is Compress.AUTO and mode.decided and not mode.pre_copies
            and not m.opts.in_container and m.tree is not None)


async def measure(m: SourceRole, ahead: Ahead) -> None:
    """The sample of the workload's memory, and the link when the sample compresses at all
    (unless ``--mode auto`` timed it already)."""
    assert m.tree is not None
    with timed(m.report.steps, "compress_sample"):
        pieces = await asyncio.to_thread(memsample.sample, m.tree.pids())
        ahead.sample = await asyncio.to_thread(lz4_rate, pieces)
    ratio = ahead.sample[0] if ahead.sample is not None else None
    if m.report.link_source is None and ratio is not None and ratio >= MIN_RATIO:
        await link_rate(m)  # --link-mbps, remembered, or timed now (agent/linkrate.py)
    ahead.done = True


async def choose_compression(m: SourceRole, plan: Plan, setting: Compress,
                             ahead: Ahead | None = None) -> CompressChoice:
    """The choice for this migration (see the module doc); measures only for ``auto``,
    unless ``ahead`` has it measured already."""
    if m.opts.in_container:  # runc dumps a container, into CRIU's own page connection
        return CompressChoice(False, setting, "containers' pages are not compressed")
    if plan.lazy_dump and not m.lazy_relay:  # decided first (agent/source.py)
        return CompressChoice(False, setting, "lazy pages take CRIU's own page path "
                              "(this node's CRIU cannot hand them to the relay)")
    if setting is not Compress.AUTO or plan.mode.pre_copies or m.tree is None:
        return choose(setting, link_bytes_per_s=None, sample_ratio=None,
                      compress_bytes_per_s=None, pre_copies=plan.mode.pre_copies)
    if ahead is None or not ahead.done:
        ahead = Ahead()
        await measure(m, ahead)
    ratio, rate = ahead.sample if ahead.sample is not None else (None, None)
    link = m.report.link_bytes_per_s
    cap = m.report.max_bandwidth_bytes_per_s
    if cap is not None and (link is None or cap < link):
        link = cap
    return choose(setting, link_bytes_per_s=link, sample_ratio=ratio,
                  compress_bytes_per_s=rate)


def describe(choice: CompressChoice) -> dict[str, Any]:
    """The report's ``compression`` before the dump (the relay adds its counts)."""
    return {"setting": str(choice.setting), "on": choice.on, "reason": choice.reason,
            "sample_ratio": choice.sample_ratio,
            "compress_bytes_per_s": choice.compress_bytes_per_s,
            "link_bytes_per_s": choice.link_bytes_per_s}


async def dump_through_relay(m: SourceRole, port: int,
                             dump: Callable[[int], Awaitable[None]], *,
                             framed: bool = False) -> None:
    """``dump(fd)`` with criu writing its page stream into ``fd``, which the page relay
    carries (LZ4-compressed when ``m.compressed``) to the destination's relay at ``port``
    (agent/pagerelay.py); ``framed``: criu writes the relay's frames itself (a lazy dump
    with ``relay_frames``), which go on as they are. A lazy dump serves its pages through
    it: the destination's lazy-pages daemon asks, criu answers, and the dump ends once
    every page is served.
    A relay that breaks closes criu's socket (its dump fails at once) and its error is the
    dump's. The report's ``compression`` gets the bytes before and after."""
    theirs, ours = pagerelay.socket_pair()
    stats = pagerelay.RelayStats()
    cap = m.report.max_bandwidth_bytes_per_s
    relay = asyncio.ensure_future(pagerelay.send_pages(
        m.opts.host, port, tls.client_context(m.opts.creds), ours, stats,
        compress=m.compressed, framed=framed,
        pacing_bytes_per_s=int(cap) if cap else None, timeout=m.opts.timeouts.plan))

    def broken(task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            ours.close()  # criu's writes fail now: the dump ends with an error
    relay.add_done_callback(broken)
    ok = False
    try:
        await dump(theirs.fileno())
        ok = True
    except (FerrymanError, OSError) as exc:
        if relay.done() and not relay.cancelled() and \
                isinstance(broke := relay.exception(), RelayError):
            raise broke from exc  # the relay broke first: criu's error is only its echo
        raise
    finally:
        theirs.close()  # criu exited: its end is closed, the relay sees the end
        if not ok:
            relay.cancel()
        try:
            await asyncio.wait_for(relay, m.opts.timeouts.plan)
        except (asyncio.CancelledError, RelayError, TimeoutError) as exc:
            if ok:
                raise RelayError(f"the page relay did not finish: {exc}") from exc
        finally:
            ours.close()
            m.report.compression.update(relay=True, raw_bytes=stats.raw_bytes,
                                        wire_bytes=stats.wire_bytes, ratio=stats.ratio,
                                        frames=stats.frames,
                                        framed_by="criu" if framed else "relay")
