"""A TCP port that only one peer address may reach: nftables in front of CRIU's page server.

CRIU's page server serves the first connection it accepts and exits when that one fails (its
TLS handshake included: criu/page-xfer.c ``cr_page_server`` accepts once, then
``tls_x509_init`` fails and the server returns), so any plain connect+close to its port
ended a migration. It cannot be told whom to accept, so the agent puts an nftables table in
front of it that resets every connection to that port except the migration's source's
(``tcp reset``: a scanner learns nothing more than from a closed port). One table per guarded
port, ``ferryman-ps-<agent port>-<port>``: installed before the page server starts (one nft
run, ~10 ms, before the Ready, never in the frozen window) and removed with the migration.

The source's lazy dump is such a page server too (post-copy, hybrid's final step): the source
guards its port the same way for the address the destination's Ready says its lazy-pages
daemon connects from (table ``ferryman-ps-0-<port>``: no agent port), records the table in the
migration's directory, and the controller's guard process removes it should the controller
be killed (agent/lockguard.py).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ferryman.errors import FerrymanError

log = logging.getLogger(__name__)
PREFIX = "ferryman-ps-"
SOURCE_AGENT_PORT = 0  # the source's guard: a controller, no agent port
RECORD = "page-server-guard"  # in a source migration's directory: its guard's table


def peer_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address as packets carry it (an IPv4-mapped IPv6 peer is an IPv4 one)."""
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True, slots=True)
class PortGuard:
    """Port ``port`` of this node, for ``allowed`` only (the agent on ``agent_port`` owns it)."""

    agent_port: int
    port: int
    allowed: str

    @property
    def table(self) -> str:
        return f"{PREFIX}{self.agent_port}-{self.port}"

    def ruleset(self) -> str:
        ip = peer_address(self.allowed)
        family = "ip" if ip.version == 4 else "ip6"
        return (f"table inet {self.table} {{\n"
                f"  chain input {{\n"
                f"    type filter hook input priority -1; policy accept;\n"
                f"    tcp dport {self.port} {family} saddr {ip} accept\n"
                f"    tcp dport {self.port} reject with tcp reset\n"
                f"  }}\n"
                f"}}\n")

    def install(self) -> None:
        """Raises FerrymanError when nftables refuses (the page server must not start)."""
        res = _nft(["-f", "-"], self.ruleset())
        if res.returncode != 0:
            raise FerrymanError(f"cannot restrict port {self.port} to {self.allowed}: "
                                f"nft said {res.stderr.strip()}",
                                hint="install nftables ('make setup') and run the agent as root")

    def remove(self) -> None:
        _remove_table(self.table)


def _remove_table(table: str) -> None:
    res = _nft(["delete", "table", "inet", table])
    if res.returncode != 0:
        log.warning("cannot remove nftables table %s: %s", table, res.stderr.strip())


def source_guard(workdir: Path, port: int, allowed: str) -> None:
    """The source's lazy page server on ``port``, for ``allowed`` only: recorded in
    ``workdir`` first (a controller killed meanwhile leaves its guard process a name to
    remove), then installed (FerrymanError when nftables refuses: the dump must not start,
    and there is no table to record)."""
    guard = PortGuard(SOURCE_AGENT_PORT, port, allowed)
    record = workdir / RECORD
    record.write_text(guard.table + "\n")
    try:
        guard.install()
    except FerrymanError:
        record.unlink(missing_ok=True)
        raise


def remove_recorded(workdir: Path) -> None:
    """The guard recorded in ``workdir``, if any, goes (by whoever ends the migration)."""
    record = workdir / RECORD
    try:
        table = record.read_text().strip()
    except FileNotFoundError:
        return
    record.unlink()
    if table.startswith(f"{PREFIX}{SOURCE_AGENT_PORT}-"):
        _remove_table(table)


def stale_tables(tables_json: str, agent_port: int) -> list[str]:
    """From ``nft -j list tables``: the guard tables of an agent on ``agent_port``."""
    mine = f"{PREFIX}{agent_port}-"
    names = []
    for item in json.loads(tables_json or "{}").get("nftables", []):
        table = item.get("table") if isinstance(item, dict) else None
        if isinstance(table, dict) and table.get("family") == "inet" and \
                str(table.get("name", "")).startswith(mine):
            names.append(str(table["name"]))
    return names


def remove_stale(agent_port: int) -> list[str]:
    """At agent start: the guard tables an earlier agent on this port left (it was killed)."""
    res = _nft(["-j", "list", "tables"])
    if res.returncode != 0:
        return []
    removed = []
    for name in stale_tables(res.stdout, agent_port):
        if _nft(["delete", "table", "inet", name]).returncode == 0:
            removed.append(name)
    return removed


def _nft(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True,
                              check=False)
    except OSError as exc:
        return subprocess.CompletedProcess(["nft", *args], 127, "", f"cannot run nft: {exc}")
