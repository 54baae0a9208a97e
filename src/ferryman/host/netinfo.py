"""Sockets and addresses from /proc: the inet tables, the local addresses of a network namespace.

Parsers are pure (text in, facts out); the readers take the procfs root, and ``net`` is the
``/proc/.../net`` directory of the namespace to look at (``/proc/self/net`` for ours,
``/proc/PID/net`` for a process's).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PROC = Path("/proc")

TCP_STATES: Final = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
    "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK",
    "0A": "LISTEN", "0B": "CLOSING",
}
TABLES: Final = (("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp"))


@dataclass(frozen=True, slots=True)
class InetSocket:
    """One inet socket. ``state`` is TCP's (LISTEN, ESTABLISHED, ...); a UDP socket is
    BOUND, or ESTABLISHED when connected."""

    proto: str  # "tcp" or "udp"
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: str
    inode: int = 0

    @property
    def wildcard(self) -> bool:
        return ipaddress.ip_address(self.local_ip).is_unspecified

    @property
    def binds(self) -> bool:
        """It holds its local port for new peers: a TCP listener or a bound UDP socket."""
        return self.state == "LISTEN" or (self.proto == "udp" and self.state == "BOUND")


def _hex_ip(text: str) -> str:
    """An address as /proc/net/* prints it: 32-bit words in host byte order."""
    raw = bytes.fromhex(text)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    ip = ipaddress.ip_address(socket.inet_ntop(family, raw))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _endpoint(text: str) -> tuple[str, int]:
    ip, _, port = text.partition(":")
    return _hex_ip(ip), int(port, 16)


def parse_inet_table(text: str, proto: str) -> list[InetSocket]:
    """The sockets of one /proc/net/{tcp,tcp6,udp,udp6} file. Malformed lines are skipped."""
    out: list[InetSocket] = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        try:
            local_ip, local_port = _endpoint(cols[1])
            remote_ip, remote_port = _endpoint(cols[2])
            inode = int(cols[9])
        except ValueError:
            continue
        state = TCP_STATES.get(cols[3].upper(), cols[3])
        if proto == "udp":
            state = "ESTABLISHED" if state == "ESTABLISHED" else "BOUND"
        out.append(InetSocket(proto, local_ip, local_port, remote_ip, remote_port, state,
                              inode))
    return out


def read_inet_sockets(net: Path) -> list[InetSocket]:
    """Every inet socket of the network namespace whose ``net`` directory is given."""
    out: list[InetSocket] = []
    for name, proto in TABLES:
        try:
            text = (net / name).read_text()
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        out.extend(parse_inet_table(text, proto))
    return out


def parse_fib_trie(text: str) -> set[str]:
    """The local IPv4 networks in /proc/net/fib_trie: each leaf ``|-- IP`` followed by
    ``/N host LOCAL`` (``/32`` for an interface address, ``/8`` for 127.0.0.0)."""
    found: set[str] = set()
    leaf: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            leaf = stripped[3:].split()[0] if stripped[3:].split() else None
        elif stripped.startswith("+--"):
            leaf = None
        elif stripped.startswith("/") and "host LOCAL" in stripped and leaf is not None:
            try:
                found.add(str(ipaddress.ip_network(f"{leaf}{stripped.split()[0]}",
                                                   strict=False)))
            except ValueError:
                continue
    return found


def parse_if_inet6(text: str) -> set[str]:
    """The IPv6 addresses in /proc/net/if_inet6 (first column, 32 hex digits), as /128s."""
    found: set[str] = set()
    for line in text.splitlines():
        cols = line.split()
        if cols and len(cols[0]) == 32:
            try:
                found.add(f"{ipaddress.IPv6Address(bytes.fromhex(cols[0]))}/128")
            except ValueError:
                continue
    return found


def local_networks(net: Path) -> set[str]:
    """The addresses (as networks: an interface address is a /32 or /128) that a socket of
    the namespace may bind."""
    found: set[str] = set()
    for name, parse in (("fib_trie", parse_fib_trie), ("if_inet6", parse_if_inet6)):
        try:
            found |= parse((net / name).read_text())
        except FileNotFoundError:
            continue
    return found


def route_source(peer: str) -> str:
    """The source address this node's connections to ``peer`` leave from (its route's
    choice, asked of the kernel with an unsent UDP connect), or "" when there is no route."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(peer).version == 6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((peer, 9))
            return str(s.getsockname()[0])
    except (OSError, ValueError):
        return ""


def is_local(ip: str, networks: Iterable[str]) -> bool:
    """``ip`` is an address of the namespace whose :func:`local_networks` are given."""
    addr = ipaddress.ip_address(ip)
    for text in networks:
        network = ipaddress.ip_network(text)
        if network.version == addr.version and addr in network:
            return True
    return False


def conflicts(wanted: InetSocket, present: Iterable[InetSocket]) -> list[InetSocket]:
    """Sockets in ``present`` that hold the port ``wanted`` must bind (same protocol and
    port, and the same address or a wildcard on either side)."""
    if not wanted.binds:
        return []
    return [p for p in present
            if p.binds and p.proto == wanted.proto and p.local_port == wanted.local_port
            and (p.wildcard or wanted.wildcard or p.local_ip == wanted.local_ip)]
