"""Interface counters from /proc/net/dev (S1's bytes moved)."""

from __future__ import annotations

import pytest
from bench.proc import BenchError
from bench.wire import parse_net_dev

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
