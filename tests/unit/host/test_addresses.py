"""--move-address parsing, what an agent lets peers move (--movable-addresses) and the
gratuitous ARP frame (no sockets)."""

from __future__ import annotations

import struct

import pytest

from ferryman.errors import UsageError
from ferryman.host.addresses import (
    MoveAddress,
    arp_frame,
    move_refusal,
    parse_movable,
    parse_move_address,
)


def test_parse_move_address() -> None:
    m = parse_move_address("10.77.0.100/24@eth0")
    assert m == MoveAddress("10.77.0.100", 24, "eth0")
    assert str(m) == "10.77.0.100/24@eth0"
    assert m.cidr == "10.77.0.100/24"


@pytest.mark.parametrize("bad", ["10.77.0.100", "10.77.0.100/24", "10.77.0.300/24@eth0",
                                 "10.77.0.1/33@eth0", "10.77.0.1/0@eth0", "x/24@eth0",
                                 "10.0.0.1/24@a-device-name-too-long", "10.0.0.1/24@e th0"])
def test_bad_move_address_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_move_address(bad)


def test_parse_movable_addresses() -> None:
    nets = parse_movable("10.77.0.0/24@eth0, 192.0.2.16/28@bond0.12")
    assert [str(n) for n in nets] == ["10.77.0.0/24@eth0", "192.0.2.16/28@bond0.12"]
    assert str(parse_movable("10.77.0.9/24@eth0")[0]) == "10.77.0.0/24@eth0"


@pytest.mark.parametrize("bad", ["10.77.0.0/24", "10.77.0.0/33@eth0", "eth0", "",
                                 "10.77.0.0/24@eth0,", "10.77.0.0/24@e th0"])
def test_bad_movable_addresses_are_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="--movable-addresses"):
        parse_movable(bad)


MOVABLE = parse_movable("10.77.0.0/24@eth0,10.9.0.0/16@eth1")


@pytest.mark.parametrize("spec", ["10.77.0.100/24@eth0", "10.77.0.100/32@eth0",
                                  "10.9.3.4/16@eth1", "10.9.3.4/24@eth1"])
def test_addresses_inside_a_movable_network_may_move(spec: str) -> None:
    assert move_refusal(parse_move_address(spec), MOVABLE, "b") is None


@pytest.mark.parametrize(("spec", "why"), [
    ("192.0.2.77/1@lo", "not movable to b"),  # the review's /1 on lo: half of IPv4 routed
    ("10.77.0.100/1@eth0", "not movable to b"),  # wider than the operator's network
    ("10.77.0.100/16@eth0", "not movable to b"),
    ("10.77.0.100/24@lo", "not movable to b"),  # another device
    ("10.77.0.100/24@eth1", "not movable to b"),
    ("10.78.0.100/24@eth0", "not movable to b"),  # another network
    ("10.77.0.0/24@eth0", "network or broadcast"),
    ("10.77.0.255/24@eth0", "network or broadcast"),
])
def test_anything_else_is_refused_with_what_the_agent_allows(spec: str, why: str) -> None:
    reason = move_refusal(parse_move_address(spec), MOVABLE, "b")
    assert reason is not None
    assert why in reason
    if "not movable" in why:
        assert "10.77.0.0/24@eth0, 10.9.0.0/16@eth1" in reason


def test_an_agent_without_movable_addresses_moves_none() -> None:
    reason = move_refusal(parse_move_address("10.77.0.100/24@eth0"), (), "b")
    assert reason is not None
    assert "--movable-addresses" in reason


def test_gratuitous_arp_frame_layout() -> None:
    mac = bytes.fromhex("020000000001")
    frame = arp_frame(mac, "10.77.0.100", 2)
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6
    assert frame[6:12] == mac
    assert frame[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 2)
    assert frame[22:28] == mac
    assert frame[28:32] == bytes([10, 77, 0, 100])
    assert frame[38:42] == bytes([10, 77, 0, 100])  # sender IP == target IP: gratuitous
    assert arp_frame(mac, "10.77.0.100", 1)[32:38] == b"\x00" * 6
