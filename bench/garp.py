#!/usr/bin/env python3
"""``python bench/garp.py IP DEV [--count N]``: gratuitous ARP for IP from DEV (arping -U).

Standalone, for the by-hand baselines when iputils' ``arping`` is missing and cannot be
installed: sends N unsolicited ARP requests (sender = target = IP), as ``arping -U -c N -I
DEV IP`` does, at once instead of one per second. Run it inside the node (nsenter): the MAC
comes from the packet socket's own address, since /sys/class/net inside a network
namespace shows the devices of the namespace that mounted /sys.
"""

from __future__ import annotations

import argparse
import socket
import struct

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
BROADCAST = b"\xff" * 6


def frame(mac: bytes, ip: str) -> bytes:
    """A broadcast unsolicited ARP request for ``ip`` at ``mac``."""
    addr = socket.inet_aton(ip)
    return (BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + mac + addr + b"\0" * 6 + addr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("ip")
    ap.add_argument("dev")
    ap.add_argument("--count", type=int, default=2)
    args = ap.parse_args()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((args.dev, 0))
        mac: bytes = s.getsockname()[4]
        for _ in range(args.count):
            s.send(frame(mac, args.ip))


if __name__ == "__main__":
    main()
