"""The page server's guard as nftables text (issue 16 finding 5; no nft run here)."""

from __future__ import annotations

import json
from pathlib import Path

from ferryman.host.portguard import (
    RECORD,
    SOURCE_AGENT_PORT,
    PortGuard,
    peer_address,
    remove_recorded,
    stale_tables,
)


def test_only_the_source_passes_everyone_else_is_reset() -> None:
    rules = PortGuard(7070, 40123, "10.77.0.1").ruleset()
    assert "table inet ferryman-ps-7070-40123 {" in rules
    assert "tcp dport 40123 ip saddr 10.77.0.1 accept\n    tcp dport 40123 reject with tcp reset" \
        in rules


def test_an_ipv4_mapped_peer_is_guarded_as_ipv4() -> None:
    assert str(peer_address("::ffff:10.77.0.1")) == "10.77.0.1"
    assert "ip6 saddr fd00::1 accept" in PortGuard(7070, 1, "fd00::1").ruleset()
    assert "ip saddr 10.77.0.1 accept" in PortGuard(7070, 1, "::ffff:10.77.0.1").ruleset()


def test_stale_tables_are_only_this_agents_guards() -> None:
    listing = json.dumps({"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "ferryman-ps-7070-40123", "handle": 1}},
        {"table": {"family": "inet", "name": "ferryman-ps-7071-40124", "handle": 2}},
        {"table": {"family": "inet", "name": "CRIU-abc", "handle": 3}},
        {"table": {"family": "ip", "name": "ferryman-ps-7070-1", "handle": 4}},
    ]})
    assert stale_tables(listing, 7070) == ["ferryman-ps-7070-40123"]


def test_the_sources_guard_has_no_agent_port_and_a_missing_record_is_nothing(
        tmp_path: Path) -> None:
    assert PortGuard(SOURCE_AGENT_PORT, 40123, "10.0.0.2").table == "ferryman-ps-0-40123"
    remove_recorded(tmp_path)  # no record: nothing to do, no nft run needed
    assert not (tmp_path / RECORD).exists()
