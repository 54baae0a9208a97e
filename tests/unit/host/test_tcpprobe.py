"""The probe's pure parts: its spec, the address it probes from, the gap it measures."""

from __future__ import annotations

import json

import pytest

from ferryman.errors import UsageError
from ferryman.host.tcpprobe import GapMeter, ProbeTarget, parse_probe, pick_source


def test_parse_probe() -> None:
    assert parse_probe("tcp:10.0.0.100:7000") == ProbeTarget("10.0.0.100", 7000)
    assert str(parse_probe("tcp:10.0.0.100:7000")) == "tcp:10.0.0.100:7000"


@pytest.mark.parametrize("text", ["10.0.0.1:7000", "udp:10.0.0.1:7000", "tcp:10.0.0.1",
                                  "tcp::7000", "tcp:host:7000", "tcp:10.0.0.1:0",
                                  "tcp:10.0.0.1:65536", "tcp:10.0.0.1:x"])
def test_parse_probe_refuses(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_probe(text)
    assert "--probe" in err.value.one_line()


def _addrs(*ips: str) -> str:
    return json.dumps([{"ifname": "eth0", "addr_info": [
        {"family": "inet", "local": ip, "prefixlen": 24} for ip in ips]}])


def test_pick_source_skips_the_moving_address() -> None:
    assert pick_source(_addrs("10.0.0.100", "10.0.0.1"), "10.0.0.100") == "10.0.0.1"
    assert pick_source(_addrs("10.0.0.1", "10.0.0.100"), "10.0.0.100") == "10.0.0.1"
    assert pick_source(_addrs("10.0.0.100"), "10.0.0.100") is None
    assert pick_source("", "10.0.0.100") is None


def test_gap_meter_keeps_the_longest_silence_and_where_it_began() -> None:
    m = GapMeter(start=10.0)
    for t in (10.01, 10.02, 10.25, 10.26, 10.30):
        m.answer(t)
    assert m.longest == pytest.approx(0.23)
    assert m.longest_at == pytest.approx(10.02)


def test_gap_meter_counts_the_wait_for_the_first_answer() -> None:
    m = GapMeter(start=1.0)
    m.answer(1.5)
    assert m.longest == pytest.approx(0.5)
    assert m.longest_at == 1.0
