"""``--compress auto|on|off``: whether the pages travel compressed (pure).

Compressed, the pages go through ferryman's page relay (``agent/pagerelay.py``: LZ4 blocks
over ferryman's own mutual-TLS stream); uncompressed, over CRIU's own TLS page path. Auto
compresses when that is faster: the relay is a pipeline, so a raw byte costs the slower of
compressing it and sending its compressed share, against sending it whole::

    on:  max(1 / compress_rate, 1 / (ratio * link_rate))   per raw byte
    off: 1 / link_rate

and compression must win by ``MARGIN`` (the relay's own costs: one more copy each side),
and the pages must compress at least ``MIN_RATIO`` (random memory does not: off). Zero
pages compress to almost nothing, so they count in the sampled ratio like any other page.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ferryman.errors import UsageError

MIN_RATIO: Final = 1.2  # below this the pages "do not compress"
MARGIN: Final = 1.25  # compressed must be this much faster than raw to be chosen


class Compress(StrEnum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


def parse_compress(text: str) -> Compress:
    """``--compress`` as given, or UsageError."""
    try:
        return Compress(text)
    except ValueError:
        raise UsageError(f"--compress must be auto, on or off, got {text!r}") from None


@dataclass(frozen=True, slots=True)
class CompressChoice:
    """What was chosen and on what facts (the report's ``compression``)."""

    on: bool
    setting: Compress
    reason: str
    sample_ratio: float | None = None  # raw / compressed bytes of the sampled pages
    compress_bytes_per_s: float | None = None  # this node's LZ4 rate on the sample
    link_bytes_per_s: float | None = None


def seconds_per_byte(link_bytes_per_s: float, ratio: float, compress_bytes_per_s: float,
                     compressed: bool) -> float:
    """What one raw byte of pages costs on its way, compressed or not (module doc)."""
    if not compressed:
        return 1.0 / link_bytes_per_s
    return max(1.0 / compress_bytes_per_s, 1.0 / (ratio * link_bytes_per_s))


def choose(setting: Compress, *, link_bytes_per_s: float | None, sample_ratio: float | None,
           compress_bytes_per_s: float | None, pre_copies: bool = False) -> CompressChoice:
    """Compress or not. ``on``/``off`` are obeyed for a cold dump and for post-copy's lazy
    pages (both go through the relay); the relay carries no pre-copied pages (pre-copy and
    hybrid stay on CRIU's TLS path, and ``on`` says so)."""
    facts = {"sample_ratio": sample_ratio, "compress_bytes_per_s": compress_bytes_per_s,
             "link_bytes_per_s": link_bytes_per_s}
    if pre_copies:
        return CompressChoice(False, setting, "pre-copy pages are not compressed", **facts)
    if setting is Compress.OFF:
        return CompressChoice(False, setting, "--compress off", **facts)
    if setting is Compress.ON:
        return CompressChoice(True, setting, "--compress on", **facts)
    # the sample first: pages that do not compress are why the link was never timed
    if sample_ratio is not None and sample_ratio < MIN_RATIO:
        return CompressChoice(False, setting, f"the pages do not compress "
                              f"(sampled ratio {sample_ratio:.2f} < {MIN_RATIO})", **facts)
    if link_bytes_per_s is None or link_bytes_per_s <= 0:
        return CompressChoice(False, setting, "the link is too fast to time", **facts)
    if sample_ratio is None or compress_bytes_per_s is None or compress_bytes_per_s <= 0:
        return CompressChoice(False, setting, "no pages could be sampled", **facts)
    raw = seconds_per_byte(link_bytes_per_s, sample_ratio, compress_bytes_per_s, False)
    packed = seconds_per_byte(link_bytes_per_s, sample_ratio, compress_bytes_per_s, True)
    mbit = link_bytes_per_s * 8 / 1e6
    if packed * MARGIN <= raw:
        return CompressChoice(True, setting, f"the link ({mbit:.0f} Mbit/s) is slower than "
                              f"compressing (ratio {sample_ratio:.1f}, "
                              f"{compress_bytes_per_s / 1e6:.0f} MB/s)", **facts)
    return CompressChoice(False, setting, f"the link ({mbit:.0f} Mbit/s) is faster than "
                          f"compressing (ratio {sample_ratio:.1f}, "
                          f"{compress_bytes_per_s / 1e6:.0f} MB/s)", **facts)
