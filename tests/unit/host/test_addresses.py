"""--move-address parsing and the gratuitous ARP frame (no sockets)."""

from __future__ import annotations

import struct

import pytest

from ferryman.errors import UsageError
from ferryman.host.addresses import MoveAddress, arp_frame, parse_move_address


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
