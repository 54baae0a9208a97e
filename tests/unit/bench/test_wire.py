"""Interface counters from /proc/net/dev (S1's bytes moved)."""

from __future__ import annotations

import pytest
from bench.proc import BenchError
from bench.wire import parse_net_dev, steady_rate

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0
  eth0: 5374416   3921    0    0    0     0          0         0 1090519040  81234    0    0    0     0       0          0
"""  # noqa: E501


def test_received_and_transmitted_bytes_of_a_device() -> None:
    assert parse_net_dev(NET_DEV, "eth0") == (5374416, 1090519040)
    assert parse_net_dev(NET_DEV, "lo") == (1200, 1200)


def test_a_missing_device_is_an_error() -> None:
    with pytest.raises(BenchError, match="no counters for eth1"):
        parse_net_dev(NET_DEV, "eth1")


def test_steady_rate_leaves_out_the_trickles_at_either_end() -> None:
    # 1 MB of pre-flight over 1 s, then 100 MB at 25 MB/s, then 1 MB of restore over 1 s
    samples = [(0.0, 0), (1.0, 1_000_000)]
    samples += [(1.0 + t, 1_000_000 + 25_000_000 * t) for t in (1, 2, 3, 4)]
    samples += [(6.0, 102_000_000)]
    rate = steady_rate([(t, int(b)) for t, b in samples])
    assert rate == pytest.approx(25_000_000)


def test_steady_rate_without_traffic_or_samples_is_none() -> None:
    assert steady_rate([]) is None
    assert steady_rate([(0.0, 5)]) is None
    assert steady_rate([(0.0, 5), (1.0, 5)]) is None
    assert steady_rate([(0.0, 0), (1.0, 100)]) is None  # 10% and 90% in one step
