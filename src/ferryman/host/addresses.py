"""Moving a service address between nodes: ``IP/PREFIX@DEV``, ip(8), gratuitous ARP.

The address goes down on the source and up on the destination inside the frozen window, and
the destination announces it (an unsolicited ARP reply and request, RFC 5227 style) so that
clients' neighbour caches point at the new node at once instead of after their timeouts.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ferryman.errors import FerrymanError, UsageError
from ferryman.host.netinfo import is_local, local_networks

_DEV = r"(?P<dev>[A-Za-z0-9_.:-]{1,15})"
_SPEC = re.compile(r"^(?P<ip>[0-9.]+)/(?P<prefix>\d{1,2})@" + _DEV + "$")
_MOVABLE = re.compile(r"^(?P<net>[0-9.]+/\d{1,2})@" + _DEV + "$")
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
BROADCAST = b"\xff" * 6


@dataclass(frozen=True, slots=True)
class MoveAddress:
    ip: str
    prefix: int
    dev: str

    def __str__(self) -> str:
        return f"{self.ip}/{self.prefix}@{self.dev}"

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefix}"


def parse_move_address(text: str) -> MoveAddress:
    """``10.0.0.100/24@eth0`` -> MoveAddress (IPv4; the prefix must fit)."""
    m = _SPEC.match(text)
    if not m:
        raise UsageError(f"bad --move-address {text!r}",
                         hint="write it as IP/PREFIX@DEVICE, e.g. 10.0.0.100/24@eth0")
    try:
        ip = ipaddress.IPv4Address(m.group("ip"))
    except ValueError as exc:
        raise UsageError(f"bad IPv4 address in {text!r}", hint="e.g. 10.0.0.100/24@eth0") from exc
    prefix = int(m.group("prefix"))
    if not 1 <= prefix <= 32:
        raise UsageError(f"bad prefix /{prefix} in {text!r}", hint="a prefix is 1 to 32")
    return MoveAddress(str(ip), prefix, m.group("dev"))


@dataclass(frozen=True, slots=True)
class MovableNetwork:
    """Addresses an agent may take up for a peer (``serve --movable-addresses``): inside
    ``network``, with a prefix no shorter than its own, on device ``dev``."""

    network: ipaddress.IPv4Network
    dev: str

    def __str__(self) -> str:
        return f"{self.network}@{self.dev}"


def parse_movable(text: str) -> tuple[MovableNetwork, ...]:
    """``10.0.0.0/24@eth0[,CIDR@DEV...]`` -> the networks an agent lets peers move in."""
    out = []
    for part in text.split(","):
        m = _MOVABLE.match(part.strip())
        try:
            if not m:
                raise ValueError(part)
            net = ipaddress.IPv4Network(m.group("net"), strict=False)
        except ValueError as exc:
            raise UsageError(f"bad --movable-addresses entry {part!r}",
                             hint="write CIDR@DEVICE[,CIDR@DEVICE], e.g. 10.0.0.0/24@eth0"
                             ) from exc
        out.append(MovableNetwork(net, m.group("dev")))
    return tuple(out)


def move_refusal(addr: MoveAddress, movable: Iterable[MovableNetwork], node: str) -> str | None:
    """Why ``node`` refuses to take up ``addr`` for a peer, or None: only an address inside
    a network its operator made movable, no wider than it, on that network's device, and
    not that subnet's network or broadcast address."""
    allowed = tuple(movable)
    if not allowed:
        return (f"{node} takes up no moved addresses: start its agent with "
                "--movable-addresses CIDR@DEVICE (e.g. 10.0.0.0/24@eth0)")
    ip = ipaddress.IPv4Address(addr.ip)
    own = ipaddress.IPv4Network(addr.cidr, strict=False)
    if addr.prefix <= 30 and ip in (own.network_address, own.broadcast_address):
        return f"{addr.ip} is the network or broadcast address of {own}: move a host address"
    if any(ip in m.network and addr.prefix >= m.network.prefixlen and addr.dev == m.dev
           for m in allowed):
        return None
    return (f"{addr} is not movable to {node}, whose agent allows "
            f"{', '.join(map(str, allowed))}: move an address inside those, with a prefix "
            "no shorter, on that device (or widen 'ferryman serve --movable-addresses' there)")


def present(ip: str, net: Path = Path("/proc/net")) -> bool:
    """``ip`` is an address of this network namespace."""
    return any_present([ip], net)


def any_present(ips: Iterable[str], net: Path = Path("/proc/net")) -> bool:
    """One of ``ips`` is an address of this network namespace."""
    mine = [n for n in local_networks(net) if n.endswith(("/32", "/128"))]
    return any(is_local(ip, mine) for ip in ips)


def has_device(dev: str) -> bool:
    """``dev`` exists in this network namespace (not /sys: that shows its mounter's)."""
    try:
        socket.if_nametoindex(dev)
    except OSError:
        return False
    return True


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise FerrymanError(f"'ip {' '.join(args)}' failed: {res.stderr.strip()}",
                            hint="check the address and device with 'ip addr'")


def add(addr: MoveAddress) -> None:
    _ip("addr", "add", addr.cidr, "dev", addr.dev)


def delete(addr: MoveAddress) -> None:
    _ip("addr", "del", addr.cidr, "dev", addr.dev)


def arp_frame(mac: bytes, ip: str, op: int) -> bytes:
    """A broadcast gratuitous ARP frame (op 1 request, op 2 reply) for ``ip`` at ``mac``."""
    addr = socket.inet_aton(ip)
    target_mac = b"\x00" * 6 if op == 1 else BROADCAST
    return (BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, op) + mac + addr + target_mac + addr)


def announce(addr: MoveAddress, count: int = 2) -> None:
    """Gratuitous ARP (request and reply) from ``addr.dev`` for ``addr.ip``."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((addr.dev, 0))
        # The device's MAC, as this network namespace sees it (/sys/class/net would show
        # the namespace that mounted /sys).
        mac: bytes = s.getsockname()[4]
        for _ in range(count):
            s.send(arp_frame(mac, addr.ip, 1))
            s.send(arp_frame(mac, addr.ip, 2))
