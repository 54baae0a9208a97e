"""Which nftables tables are this CRIU run's network lock (and which are not ours)."""

from __future__ import annotations

import json

from ferryman.agent.lockguard import run_id_from_log
from ferryman.host.netlock import lock_tables, locked_addresses

RUN = "445b38f7-8b19-4adb-bd51-0c1d2e3f4a5b"


def _tables(*tables: tuple[str, str]) -> str:
    return json.dumps({"nftables": [{"metainfo": {"version": "1.0.6"}}] + [
        {"table": {"family": family, "name": name, "handle": i}}
        for i, (family, name) in enumerate(tables)]})


def test_finds_the_shortened_table_of_this_run_only() -> None:
    listing = _tables(("inet", "CRIU-445b38f7-8b19-4adb-bd"),  # CRIU shortens the name
                      ("inet", "CRIU-99999999-8b19-4adb-bd"),  # another run, maybe frozen
                      ("ip", "CRIU-445b38f7-8b19-4adb-bd"),    # not CRIU's family
                      ("inet", "filter"))
    assert lock_tables(listing, RUN) == ["CRIU-445b38f7-8b19-4adb-bd"]


def test_never_matches_a_bare_prefix() -> None:
    assert lock_tables(_tables(("inet", "CRIU-"), ("inet", "CRIU-445b")), RUN) == []


def test_nothing_listed() -> None:
    assert lock_tables("", RUN) == []
    assert lock_tables(_tables(), RUN) == []


def test_the_addresses_of_the_locked_connections() -> None:
    listing = json.dumps({"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "CRIU-445b38f7-8b19-4adb-bd", "handle": 9}},
        {"chain": {"family": "inet", "table": "CRIU-445b38f7-8b19-4adb-bd", "name": "input"}},
        {"set": {"family": "inet", "name": "conns4", "table": "CRIU-445b38f7-8b19-4adb-bd",
                 "elem": [{"concat": ["10.77.0.100", 7000, "10.77.0.3", 48902]},
                          {"concat": ["10.77.0.3", 48902, "10.77.0.100", 7000]}]}},
        {"set": {"family": "inet", "name": "conns6", "table": "CRIU-445b38f7-8b19-4adb-bd"}},
    ]})
    assert locked_addresses(listing) == {"10.77.0.100", "10.77.0.3"}
    assert locked_addresses("") == set()


def test_the_guard_reads_the_run_id_criu_logs_first() -> None:
    log = ("(00.000000) Parsing config file /w/runc-hold/criu.conf\n"
           f"(00.000000) CRIU run id = {RUN}\n(00.000053) Version: 4.2.1 (gitid 0)\n")
    assert run_id_from_log(log) == RUN
    assert run_id_from_log("(00.000000) Version: 4.2.1\n") is None


def test_the_lock_is_taken_only_where_it_holds_something_still() -> None:
    from ferryman.host.netlock import needed

    assert not needed(tcp_established=False, own_net_ns=False, container=False)
    assert needed(tcp_established=True, own_net_ns=False, container=False)
    assert needed(tcp_established=False, own_net_ns=True, container=False)
    assert needed(tcp_established=False, own_net_ns=False, container=True)
