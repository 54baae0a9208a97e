"""Orphan records name the service address a held copy came with (agent/orphans.py)."""

from __future__ import annotations

from pathlib import Path

from ferryman.agent.orphans import list_orphans, orphan_record, write_outcome
from ferryman.host.addresses import parse_move_address
from ferryman.host.procfs import ProcessIdentity

IDENT = ProcessIdentity(pid=4321, start_time=98765)


def test_record_without_an_address_lists_none(tmp_path: Path) -> None:
    write_outcome(tmp_path, "m1", orphan_record(IDENT))
    (o,) = list_orphans(tmp_path)
    assert (o.migration_id, o.tree.pid, o.address) == ("m1", 4321, None)


def test_record_keeps_the_address_for_resume(tmp_path: Path) -> None:
    addr = parse_move_address("10.0.0.100/24@eth0")
    write_outcome(tmp_path, "m2", orphan_record(IDENT, addr))
    (o,) = list_orphans(tmp_path)
    assert o.address == addr


def test_malformed_address_word_is_no_record(tmp_path: Path) -> None:
    write_outcome(tmp_path, "m3", "ORPHANED 4321 98765 /etc/shadow\n")
    write_outcome(tmp_path, "m4", "ORPHANED 4321 98765 10.0.0.1/24@eth0 extra\n")
    assert list_orphans(tmp_path) == []
