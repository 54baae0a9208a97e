"""IPv4 TCP segments as bytes: checksums, and pieces that fit a device's MTU. Pure.

A segment captured at a device (``host/inflight.py``) cannot always be sent again as it is:
- one that a local socket or a veth peer handed over may carry only the partial checksum of
  checksum offload (the pseudo-header's sum), which the next receiver rejects;
- one that GRO merged may be longer than the MTU.

So :func:`pieces` cuts a segment at the MSS the MTU allows and gives every piece fresh IP and
TCP checksums.
"""

from __future__ import annotations

import struct

TCP = 6
SYN = 0x02
FIN = 0x01
PSH = 0x08
MIN_IP_HEADER = 20
MIN_TCP_HEADER = 20


class BadSegment(ValueError):
    """Not a whole, unfragmented IPv4 TCP segment."""


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _parts(packet: bytes) -> tuple[bytes, bytes, bytes]:
    """(IP header, TCP header, payload) of one IPv4 TCP segment, trailing padding cut off."""
    if len(packet) < MIN_IP_HEADER or packet[0] >> 4 != 4:
        raise BadSegment("not IPv4")
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    if ihl < MIN_IP_HEADER or total < ihl + MIN_TCP_HEADER or total > len(packet):
        raise BadSegment(f"bad lengths (header {ihl}, total {total}, captured {len(packet)})")
    if packet[9] != TCP:
        raise BadSegment(f"IP protocol {packet[9]}, not TCP")
    if struct.unpack_from("!H", packet, 6)[0] & 0x3FFF:  # MF or a fragment offset
        raise BadSegment("a fragment")
    doff = (packet[ihl + 12] >> 4) * 4
    if doff < MIN_TCP_HEADER or ihl + doff > total:
        raise BadSegment(f"bad TCP header length {doff}")
    return packet[:ihl], packet[ihl:ihl + doff], packet[ihl + doff:total]


def _build(ip: bytes, tcp: bytes, payload: bytes, seq: int, flags: int) -> bytes:
    """One segment from its headers (seq, flags replaced), both checksums computed."""
    th = bytearray(tcp)
    struct.pack_into("!I", th, 4, seq & 0xFFFFFFFF)
    th[13] = flags
    struct.pack_into("!H", th, 16, 0)
    body = bytes(th) + payload
    pseudo = ip[12:20] + struct.pack("!BBH", 0, TCP, len(body))
    struct.pack_into("!H", th, 16, checksum(pseudo + body))
    ih = bytearray(ip)
    struct.pack_into("!H", ih, 2, len(ip) + len(body))  # total length
    struct.pack_into("!H", ih, 10, 0)
    struct.pack_into("!H", ih, 10, checksum(bytes(ih)))
    return bytes(ih) + bytes(th) + payload


def pieces(packet: bytes, mtu: int) -> list[bytes]:
    """``packet`` as segments of at most ``mtu`` bytes each, with correct checksums.

    The pieces carry consecutive sequence numbers; FIN and PSH stay on the last one only.
    Raises BadSegment for anything but a whole IPv4 TCP segment.
    """
    ip, tcp, payload = _parts(packet)
    seq = struct.unpack_from("!I", tcp, 4)[0]
    flags = tcp[13]
    mss = mtu - len(ip) - len(tcp)
    if mss <= 0:
        raise BadSegment(f"headers of {len(ip) + len(tcp)} bytes do not fit MTU {mtu}")
    if len(payload) <= mss:
        return [_build(ip, tcp, payload, seq, flags)]
    out = []
    for off in range(0, len(payload), mss):
        last = off + mss >= len(payload)
        out.append(_build(ip, tcp, payload[off:off + mss], seq + off,
                          flags if last else flags & ~(FIN | PSH)))
    return out

