"""A Podman container's live connections through a published port: which ones the dump holds,
which ports Podman publishes, and the nftables hold that keeps the restored sockets quiet
until the client's conntrack entry (with Podman's DNAT) is made here (docs/ARCHITECTURE.md,
"Podman containers"). Pure but for nothing: reading the images is CRIU's decoder's.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferryman.criu.decode import FILES, image_entries

__all__ = ["Connection", "conntrack_get_argv", "hold_ruleset", "hold_table",
           "image_connections", "published_ports"]


@dataclass(frozen=True, slots=True)
class Connection:
    """An established TCP connection of the container: its end and the peer's."""

    local: str
    local_port: int
    peer: str
    peer_port: int


TCP_ESTABLISHED = 1


def image_connections(images: Path) -> list[Connection]:
    """The established TCP connections in a dump's ``files.img`` (IPv4, or IPv4-mapped)."""
    out = []
    for e in image_entries(images / FILES):
        isk = e.get("isk") if e.get("type") == "INETSK" else None
        if not isinstance(isk, dict) or isk.get("state") != TCP_ESTABLISHED:
            continue
        src, dst = _v4(isk.get("src_addr")), _v4(isk.get("dst_addr"))
        if src and dst:
            out.append(Connection(src, int(isk.get("src_port", 0)), dst,
                                  int(isk.get("dst_port", 0))))
    return out


def _v4(addr: object) -> str:
    """An address of sk-inet.proto (1 or 4 32-bit words, each holding 4 bytes of the address
    in network order, read as a little-endian integer) as dotted IPv4, "" if not IPv4."""
    if not isinstance(addr, list) or len(addr) not in (1, 4) or \
            not all(isinstance(w, int) and 0 <= w < 1 << 32 for w in addr):
        return ""
    raw = b"".join(struct.pack("<I", w) for w in addr)
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else ""
    return str(ip)


def published_ports(config: Mapping[str, Any]) -> dict[int, int]:
    """config.dump's TCP port mappings: container port -> host port (ranges expanded)."""
    out = {}
    for m in config.get("newPortMappings") or []:
        if not isinstance(m, dict) or m.get("protocol", "tcp") != "tcp":
            continue
        try:
            cport, hport, n = int(m["container_port"]), int(m["host_port"]), \
                int(m.get("range") or 1)
        except (KeyError, TypeError, ValueError):
            continue
        for i in range(max(1, min(n, 65536))):
            out[cport + i] = hport + i
    return out


def conntrack_get_argv(c: Connection, service_ip: str, host_port: int) -> list[str]:
    """``conntrack -G``: the client's entry for the connection (client -> service address:
    host port) exists: its first segment here went through the DNAT."""
    return ["conntrack", "-G", "-p", "tcp", "-s", c.peer, "-d", service_ip,
            "--sport", str(c.peer_port), "--dport", str(host_port)]


def hold_table(container_id: str) -> str:
    return f"ferryman-pm-{container_id[:12]}"


def hold_ruleset(table: str, conns: Sequence[Connection]) -> str:
    """nftables: drop what the restored connections send until their NAT state is here. A
    dropped packet's conntrack entry is never confirmed, so the container's first segment
    makes none; otherwise its entry, made from the container's side, has no DNAT: its
    answers left untranslated and the client's next segment met no socket here (a reset)."""
    rules = "".join(f"    ip saddr {c.local} tcp sport {c.local_port} ip daddr {c.peer} "
                    f"tcp dport {c.peer_port} drop\n" for c in conns)
    return (f"table inet {table} {{\n  chain forward {{\n"
            f"    type filter hook forward priority -300; policy accept;\n{rules}  }}\n}}\n")
