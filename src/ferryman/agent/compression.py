"""``--compress``: the measurements behind the choice, made before the Plan is sent.

``auto`` measures what ``migration/compress.py:choose`` needs: the link (the pre-flight's
link test over the control connection, or ``--mode auto``'s if it ran; capped by
``--max-bandwidth``), and how a sample of the workload's memory compresses with LZ4 on this
node's CPU, and how fast (``host/memsample.py``: 32 x 256 KiB from its private writable
mappings). ``on`` and ``off`` measure nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import lz4.block  # type: ignore[import-untyped]

from ferryman.agent import pagerelay
from ferryman.agent.link import measure_link
from ferryman.agent.pagerelay import RelayError
from ferryman.agent.role import SourceRole
from ferryman.agent.steps import timed
from ferryman.errors import FerrymanError
from ferryman.host import memsample
from ferryman.migration.compress import MIN_RATIO, Compress, CompressChoice, choose
from ferryman.migration.plan import Plan
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


async def choose_compression(m: SourceRole, plan: Plan, setting: Compress) -> CompressChoice:
    """The choice for this migration (see the module doc); measures only for ``auto``."""
    if m.opts.in_container:  # runc dumps a container, into CRIU's own page connection
        return CompressChoice(False, setting, "containers' pages are not compressed")
    if setting is not Compress.AUTO or plan.mode.lazy or plan.mode.pre_copies \
            or m.tree is None:
        return choose(setting, link_bytes_per_s=None, sample_ratio=None,
                      compress_bytes_per_s=None, lazy=plan.mode.lazy,
                      pre_copies=plan.mode.pre_copies)
    with timed(m.report.steps, "compress_sample"):
        pieces = await asyncio.to_thread(memsample.sample, m.tree.pids())
        measured = await asyncio.to_thread(lz4_rate, pieces)
    ratio, rate = measured if measured is not None else (None, None)
    link = m.report.link_bytes_per_s
    if link is None and ratio is not None and ratio >= MIN_RATIO:  # else: no need to know
        assert m.ch is not None
        m.opts.progress("CHECKING", "timing the link (--compress auto)")
        with timed(m.report.steps, "link_test"):
            link = await measure_link(m.ch, m.opts.timeouts.plan)
        m.report.link_bytes_per_s = link
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
                             dump: Callable[[int], Awaitable[None]]) -> None:
    """``dump(fd)`` with criu writing its page stream into ``fd``, which the page relay
    carries, compressed, to the destination's relay at ``port`` (agent/pagerelay.py).
    A relay that breaks closes criu's socket (its dump fails at once) and its error is the
    dump's. The report's ``compression`` gets the bytes before and after."""
    theirs, ours = pagerelay.socket_pair()
    stats = pagerelay.RelayStats()
    cap = m.report.max_bandwidth_bytes_per_s
    relay = asyncio.ensure_future(pagerelay.send_pages(
        m.opts.host, port, tls.client_context(m.opts.creds), ours, stats,
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
            m.report.compression.update(raw_bytes=stats.raw_bytes,
                                        wire_bytes=stats.wire_bytes, ratio=stats.ratio,
                                        frames=stats.frames)
