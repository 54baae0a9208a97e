"""host/inflight.py: the packet filter that picks what to hold, run by a small classic-BPF
interpreter (the opcodes it uses, as linux/filter.h defines them)."""

from __future__ import annotations

import struct

import pytest

from ferryman.host import inflight as fi
from tests.unit.host.test_segments import CAPTURED

SERVICE = "10.77.0.100"


def run(insns: list[fi.Insn], pkt: bytes) -> int:
    a = x = pc = 0
    while True:
        i = insns[pc]
        if i.code == fi.LD_W_ABS:
            a = int.from_bytes(pkt[i.k:i.k + 4], "big")
        elif i.code == fi.LD_H_ABS:
            a = int.from_bytes(pkt[i.k:i.k + 2], "big")
        elif i.code == fi.LD_B_ABS:
            a = pkt[i.k]
        elif i.code == fi.LD_B_IND:
            a = pkt[x + i.k]
        elif i.code == fi.LDX_B_MSH:
            x = (pkt[i.k] & 0x0F) * 4
        elif i.code == fi.JEQ_K:
            pc += i.jt if a == i.k else i.jf
        elif i.code == fi.JSET_K:
            pc += i.jt if a & i.k else i.jf
        elif i.code == fi.RET_K:
            return i.k
        else:
            raise AssertionError(f"opcode {i.code:#x}")
        pc += 1


def _with_options(seg: bytes, flags: int) -> bytes:
    """``seg`` with 4 bytes of IP options (IHL 6) and TCP ``flags``."""
    ip = bytearray(seg[:20])
    ip[0] = 0x46
    struct.pack_into("!H", ip, 2, len(seg) + 4)
    tcp = bytearray(seg[20:])
    tcp[13] = flags
    return bytes(ip) + b"\x01\x01\x01\x00" + bytes(tcp)


def test_it_holds_tcp_segments_to_the_service_address() -> None:
    prog = fi.program(SERVICE)
    assert run(prog, CAPTURED) == fi.ACCEPT
    assert run(prog, _with_options(CAPTURED, 0x10)) == fi.ACCEPT  # the TCP header moved


@pytest.mark.parametrize("packet", [
    CAPTURED[:16] + bytes([10, 77, 0, 101]) + CAPTURED[20:],  # another address
    CAPTURED[:9] + b"\x11" + CAPTURED[10:],  # UDP
    CAPTURED[:6] + b"\x20\x00" + CAPTURED[8:],  # the first fragment (MF)
    CAPTURED[:6] + b"\x00\x10" + CAPTURED[8:],  # a later fragment
    CAPTURED[:33] + b"\x02" + CAPTURED[34:],  # a SYN
    _with_options(CAPTURED, 0x12),  # a SYN ACK behind IP options
])
def test_it_passes_everything_else(packet: bytes) -> None:
    assert run(fi.program(SERVICE), packet) == 0


def test_jumps_stay_inside_the_program() -> None:
    prog = fi.program(SERVICE)
    for pc, i in enumerate(prog):
        if i.code in (fi.JEQ_K, fi.JSET_K):
            assert pc + 1 + max(i.jt, i.jf) < len(prog)
    assert prog[-1] == fi.Insn(fi.RET_K, 0, 0, 0)
