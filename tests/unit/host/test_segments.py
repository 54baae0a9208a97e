"""host/segments.py: the checksums and pieces of a forwarded segment."""

from __future__ import annotations

import struct

import pytest

from ferryman.host.segments import BadSegment, checksum, pieces

# A request of the echo client (10.77.0.3:58484 -> 10.77.0.100:7000, "100\n") as tcpdump saw
# it on a veth: the TCP checksum is offload's partial one (0x152b); tcpdump computed the right
# one, 0x3fce. The IP header's (0x845e) is right.
CAPTURED = bytes.fromhex(
    "45000038a1614000400684" "5e0a4d00030a4d0064e4741b58ed59d416c0c55e72"
    "8018003f152b00000101080a2105f2e8ec01e0033130300a")
FIXED = CAPTURED[:36] + bytes.fromhex("3fce") + CAPTURED[38:]


def _segment(payload: bytes, flags: int = 0x18, seq: int = 1000) -> bytes:
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 7, 0x4000, 64, 6,
                               0, bytes([10, 0, 0, 3]), bytes([10, 0, 0, 100])))
    tcp = struct.pack("!HHIIBBHHH", 40000, 7000, seq, 5, 5 << 4, flags, 512, 0, 0)
    return bytes(ip) + tcp + payload


def _valid(seg: bytes) -> bool:
    ihl = (seg[0] & 15) * 4
    body = seg[ihl:]
    pseudo = seg[12:20] + struct.pack("!BBH", 0, 6, len(body))
    return checksum(seg[:ihl]) == 0 and checksum(pseudo + body) == 0


def test_a_captured_segment_gets_the_checksum_tcpdump_computed() -> None:
    assert pieces(CAPTURED, 1500) == [FIXED]
    assert _valid(FIXED)


def test_ethernet_padding_after_the_ip_length_is_cut_off() -> None:
    assert pieces(CAPTURED + b"\0" * 6, 1500) == [FIXED]


def test_a_merged_segment_is_cut_at_the_mss_with_consecutive_sequence_numbers() -> None:
    payload = bytes(range(256)) * 12  # 3072 bytes
    segs = pieces(_segment(payload, flags=0x19, seq=0xFFFFFF00), 1500)  # PSH FIN ACK
    assert [len(s) for s in segs] == [1500, 1500, 40 + 3072 - 2 * 1460]
    assert all(_valid(s) for s in segs)
    seqs = [struct.unpack_from("!I", s, 24)[0] for s in segs]
    assert seqs == [0xFFFFFF00, (0xFFFFFF00 + 1460) & 0xFFFFFFFF, (0xFFFFFF00 + 2920) % 2**32]
    assert [s[33] for s in segs] == [0x10, 0x10, 0x19]  # PSH and FIN on the last one only
    assert b"".join(s[40:] for s in segs) == payload
    assert all(struct.unpack_from("!H", s, 2)[0] == len(s) for s in segs)


@pytest.mark.parametrize(("packet", "why"), [
    (CAPTURED[:30], "bad lengths"),
    (b"\x60" + CAPTURED[1:], "not IPv4"),
    (CAPTURED[:9] + b"\x11" + CAPTURED[10:], "not TCP"),
    (CAPTURED[:6] + b"\x20\x00" + CAPTURED[8:], "a fragment"),
])
def test_anything_but_a_whole_tcp_segment_is_refused(packet: bytes, why: str) -> None:
    with pytest.raises(BadSegment, match=why):
        pieces(packet, 1500)

