"""Segments that reach the source for a moving address while the workload is frozen.

CRIU's network lock drops every packet of a dumped connection on the source (it must: the
socket's state is already in the images). A client whose request lands in that window
waits for its own retransmission timer, at least 200 ms on Linux, although the destination
may have been serving for a while by then.

So while the workload is frozen the source keeps copies of the TCP segments that reach it for
the service address: a packet socket per device with a BPF filter (destination address, TCP,
no SYN, no fragments), whose receive queue is the buffer, read only at the end. Once the
destination has restored, :meth:`InFlight.forward` sends them on, as raw IP packets with the
client's own addresses (and CRIU's packet mark, which its lock lets through); the address is
the destination's by then. A segment the dump had
already taken is a duplicate, which TCP drops (it only acknowledges it again). A SYN is never
forwarded: the destination would answer it with a second, different handshake.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ferryman.host.segments import SYN, BadSegment, pieces

log = logging.getLogger(__name__)

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SIOCGIFMTU = 0x8921
CRIU_MARK = 0xC114  # SOCCR_MARK: CRIU's lock chains accept packets with this mark first
BUFFER_BYTES = 8 << 20  # the socket's receive queue is the whole buffer; beyond, TCP resends
READ_BYTES = 1 << 18  # one GRO merge can be up to 64 KiB; BIG TCP more

# classic BPF (linux/filter.h): class | size | mode, jump operations
LD_W_ABS, LD_H_ABS, LD_B_ABS, LD_B_IND = 0x20, 0x28, 0x30, 0x50
LDX_B_MSH, JEQ_K, JSET_K, RET_K = 0xB1, 0x15, 0x45, 0x06
ACCEPT = 0x40000


@dataclass(frozen=True, slots=True)
class Insn:
    code: int
    jt: int
    jf: int
    k: int


def program(ip: str) -> list[Insn]:
    """Accept IPv4 TCP segments to ``ip`` without SYN, not fragments (offsets from the IP
    header: a SOCK_DGRAM packet socket filters from the network header)."""
    addr = int.from_bytes(socket.inet_aton(ip), "big")
    reject = 10
    return [
        Insn(LD_W_ABS, 0, 0, 16),  # 0: destination address
        Insn(JEQ_K, 0, reject - 2, addr),  # 1
        Insn(LD_B_ABS, 0, 0, 9),  # 2: protocol
        Insn(JEQ_K, 0, reject - 4, socket.IPPROTO_TCP),  # 3
        Insn(LD_H_ABS, 0, 0, 6),  # 4: flags and fragment offset
        Insn(JSET_K, reject - 6, 0, 0x3FFF),  # 5: MF or an offset: a fragment
        Insn(LDX_B_MSH, 0, 0, 0),  # 6: X = the IP header's length
        Insn(LD_B_IND, 0, 0, 13),  # 7: TCP flags
        Insn(JSET_K, reject - 9, 0, SYN),  # 8
        Insn(RET_K, 0, 0, ACCEPT),  # 9
        Insn(RET_K, 0, 0, 0),  # 10: reject
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _attach(sock: socket.socket, insns: Sequence[Insn]) -> None:
    code = ctypes.create_string_buffer(
        b"".join(struct.pack("HBBI", i.code, i.jt, i.jf, i.k) for i in insns))
    prog = _SockFprog(len(insns), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))


def mtu(dev: str) -> int:
    """The MTU of ``dev`` in this network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = fcntl.ioctl(s, SIOCGIFMTU, struct.pack("16si", dev.encode(), 0))
    return int(struct.unpack("16si", req)[1])


@dataclass(frozen=True, slots=True)
class Forwarded:
    captured: int  # segments that reached this node while it held them
    sent: int  # packets sent on (a segment longer than the MTU goes as several)
    skipped: int  # not a whole IPv4 TCP segment, or the send failed


class InFlight:
    """Holds the segments to ``ip`` arriving on ``devices`` until :meth:`forward`."""

    def __init__(self, ip: str, devices: Sequence[str], buffer_bytes: int = BUFFER_BYTES) -> None:
        self.ip = ip
        self.socks: list[socket.socket] = []
        insns = program(ip)
        try:
            for dev in dict.fromkeys(devices):
                # protocol 0 receives nothing until bound: no packet slips in before the filter
                s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
                self.socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, buffer_bytes)
                _attach(s, insns)
                s.bind((dev, ETH_P_IP))
                s.setblocking(False)
        except OSError:
            self.close()
            raise

    def take(self) -> list[bytes]:
        """Every segment received so far (not this node's own outgoing ones), in order per
        device."""
        out = []
        for s in self.socks:
            while True:
                try:
                    data, addr = s.recvfrom(READ_BYTES)
                except BlockingIOError:
                    break
                if addr[2] != PACKET_OUTGOING:
                    out.append(data)
        return out

    def forward(self, mtu_bytes: int) -> Forwarded:
        """Send every held segment on to ``ip`` (now elsewhere) and stop holding."""
        held = self.take()
        self.close()
        sent = skipped = 0
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as out:
            # CRIU's lock may still be here (it is removed alongside): it drops these
            # connections' packets on the way out too, except CRIU's own, which carry its mark
            out.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, CRIU_MARK)
            for packet in held:
                try:
                    segs = pieces(packet, mtu_bytes)
                except BadSegment as exc:
                    log.debug("not forwarding a held packet: %s", exc)
                    skipped += 1
                    continue
                for seg in segs:
                    try:
                        out.sendto(seg, (self.ip, 0))
                        sent += 1
                    except OSError as exc:
                        log.debug("forwarding a held segment failed: %s", exc)
                        skipped += 1
        return Forwarded(len(held), sent, skipped)

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []
