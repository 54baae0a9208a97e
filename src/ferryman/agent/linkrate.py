"""The link's rate for a migration's choices (``--compress auto``, ``--mode auto``), and how
it is known: assumed (``--link-mbps``), remembered (agent/linkmemo.py), or measured now over
the control connection (agent/link.py), then remembered for the next migration there."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ferryman.agent import linkmemo
from ferryman.agent.link import measure_link
from ferryman.agent.steps import timed

if TYPE_CHECKING:
    from ferryman.agent.channel import Channel
    from ferryman.agent.role import SourceRole

ASSUMED = "assumed (--link-mbps)"
MEASURED = "measured"


async def timed_and_remembered(ch: Channel, steps: dict[str, float], *, state_dir: Path,
                               key: str, by: str, timeout: float) -> float | None:
    """Time the link now (the ``link_test`` step) and remember the rate under ``key``."""
    with timed(steps, "link_test"):
        rate = await measure_link(ch, timeout)
    linkmemo.remember(state_dir, key, rate, by=by)
    return rate


async def link_rate(role: SourceRole) -> float | None:
    """Bytes per second (None: too fast for the link test to time), also put in the report
    (``link_bytes_per_s``, ``link_source``)."""
    opts, report = role.opts, role.report
    if opts.precopy.link_mbps is not None:
        rate: float | None = opts.precopy.link_mbps * 125_000
        report.link_source = ASSUMED
    else:
        key = linkmemo.memo_key(report.destination_node or "?", opts.host, opts.port)
        memo = linkmemo.recall(opts.state_dir, key)
        if memo is not None:
            rate = memo.bytes_per_s
            report.link_source = memo.describe()
        else:
            assert role.ch is not None
            opts.progress("CHECKING", "timing the link")
            rate = await timed_and_remembered(role.ch, report.steps, state_dir=opts.state_dir,
                                              key=key, by="migrate",
                                              timeout=opts.timeouts.plan)
            report.link_source = MEASURED
    report.link_bytes_per_s = rate
    return rate
