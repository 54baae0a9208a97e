"""The link's rate, measured over the control connection before ``--mode auto`` chooses.

Round trips of a LinkTest, a small one and a large one (4 MiB, twice, the faster kept): the
difference of their times is what the extra bytes cost, free of the round-trip time and of
any clock offset between the nodes. It is TLS over the same network path the pages take.
What our own Python framing costs per byte (encoding on this node, decoding on the other;
~25 ms for 4 MiB, far more than CRIU's page server spends) is timed here on the same frame
and taken off, assuming the destination decodes as fast as this node does.
"""

from __future__ import annotations

import time

from ferryman import wire
from ferryman.agent.channel import READ_SIZE, Channel
from ferryman.errors import RemoteProtocolError
from ferryman.wire.limits import MAX_CHUNK_BYTES

SMALL = 1 << 10
LARGE = MAX_CHUNK_BYTES  # the largest LinkTest the wire allows
LARGE_ROUNDS = 2


def link_rate(extra_bytes: int, small_s: float, large_s: float, framing_s: float = 0.0
              ) -> float | None:
    """Bytes per second the ``extra_bytes`` of the large test cost on the wire, without our
    framing's ``framing_s``; None when unmeasurable (a link too fast for this test)."""
    wire_s = large_s - small_s - framing_s
    if extra_bytes <= 0 or wire_s <= 0:
        return None
    return extra_bytes / wire_s


def framing_cost(size: int) -> float:
    """Seconds to encode and decode a LinkTest of ``size`` bytes here (the better of two)."""
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        frame = wire.encode(wire.LinkTest(bytes(size)))
        decoder = wire.FrameDecoder()
        for at in range(0, len(frame), READ_SIZE):  # as the destination's Channel reads
            decoder.receive_data(frame[at:at + READ_SIZE])
        decoder.maybe_message()
        best = min(best, time.perf_counter() - t0)
    return best


async def _round_trip(ch: Channel, size: int, timeout: float) -> float:
    payload = bytes(size)
    t0 = time.monotonic()
    await ch.send(wire.LinkTest(payload))
    answer = await ch.expect((wire.LinkReport,), timeout)
    took = time.monotonic() - t0
    if answer.bytes != size:
        raise RemoteProtocolError(f"the link test sent {size} bytes, the destination counted "
                                  f"{answer.bytes}")
    return took


async def measure_link(ch: Channel, timeout: float) -> float | None:
    """The link's rate in bytes per second (see the module doc), or None."""
    small = await _round_trip(ch, SMALL, timeout)
    large = min([await _round_trip(ch, LARGE, timeout) for _ in range(LARGE_ROUNDS)])
    return link_rate(LARGE - SMALL, small, large, framing_cost(LARGE) - framing_cost(SMALL))
