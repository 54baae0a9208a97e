"""The pre-flight query: facts to JSON within a budget, and strict decoding of what arrives."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.errors import RemoteProtocolError
from ferryman.host.inspect import FileRef, FileStat, WorkloadFacts
from ferryman.host.netinfo import InetSocket
from ferryman.migration.query import CheckQuery, decode_query, encode_query
from ferryman.wire import CheckRequest
from ferryman.wire.limits import MAX_CHECK_JSON_BYTES

BIG = 1 << 20


def facts(n_files: int = 2, n_ids: int = 3) -> WorkloadFacts:
    files = [FileRef("/usr/bin/app", "exe", FileStat("f", 100, 7)),
             FileRef("/srv", "cwd", FileStat("d", 0, 1))]
    files += [FileRef(f"/usr/lib/lib{i}.so", "map", FileStat("f", i, i)) for i in range(n_files)]
    files += [FileRef(f"/var/log/{i}.log", "fd", FileStat("f", i, i)) for i in range(n_files)]
    return WorkloadFacts(
        pid=4242, comm="app é", processes=2, ids=tuple(range(4242, 4242 + n_ids)),
        own_pid_ns=False, own_net_ns=False, own_time_ns=True, rss_bytes=123 << 20,
        files=tuple(files),
        sockets=(InetSocket("tcp", "10.0.0.1", 80, "0.0.0.0", 0, "LISTEN"),
                 InetSocket("tcp", "::1", 5000, "::1", 6000, "ESTABLISHED"),
                 InetSocket("udp", "0.0.0.0", 53, "0.0.0.0", 0, "BOUND")),
        deleted_files=1)


def test_round_trip() -> None:
    w = facts()
    q = decode_query(encode_query(w, ["/data"], budget=BIG))
    assert q == CheckQuery(w, ("/data",), 0, 0)


def test_fits_the_wire() -> None:
    text = encode_query(facts(n_files=3000, n_ids=5000), [], budget=MAX_CHECK_JSON_BYTES)
    CheckRequest(text)  # does not raise: fits the frame header escaped
    q = decode_query(text)
    kinds = {f.kind for f in q.workload.files}
    assert "map" not in kinds  # mappings go first
    assert q.omitted_files >= 3000


def test_budget_gives_up_maps_then_fds_then_ids() -> None:
    w = facts(n_files=50, n_ids=10)
    full = len(json.dumps(encode_query(w, [], budget=BIG), ensure_ascii=False).encode())
    q = decode_query(encode_query(w, [], budget=full - 1))
    assert {f.kind for f in q.workload.files} == {"exe", "cwd", "fd"}
    assert q.omitted_files == 50
    q = decode_query(encode_query(w, [], budget=700))
    assert {f.kind for f in q.workload.files} <= {"exe", "cwd"}
    many = facts(n_files=0, n_ids=2000)
    q = decode_query(encode_query(many, [], budget=2000))
    assert 0 < len(q.workload.ids) < 2000
    assert q.omitted_ids == 2000 - len(q.workload.ids)
    with pytest.raises(ValueError, match="does not fit"):
        encode_query(w, [], budget=10)


@given(st.lists(st.text(min_size=1, max_size=30).map(lambda s: "/" + s.replace("\0", "")),
                max_size=20))
def test_any_paths_round_trip(paths: list[str]) -> None:
    w = replace(facts(n_files=0), files=tuple(FileRef(p, "fd", FileStat("f", 1, 2))
                                               for p in dict.fromkeys(paths)))
    assert decode_query(encode_query(w, paths, budget=BIG)).workload == w


def test_locked_files_round_trip() -> None:
    w = replace(facts(n_files=0), locked_files=("/run/daemon.pid", "/var/lib/app/db.lock"))
    got = decode_query(encode_query(w, [], budget=BIG)).workload
    assert got.locked_files == ("/run/daemon.pid", "/var/lib/app/db.lock")


def test_terminals_round_trip() -> None:
    w = replace(facts(n_files=0), ptys=(0, 3, 17))
    assert decode_query(encode_query(w, [], budget=BIG)).workload.ptys == (0, 3, 17)


def test_unix_peers_round_trip() -> None:
    w = replace(facts(n_files=0), unix_peers=("/dev/log", "@abstract log"))
    got = decode_query(encode_query(w, [], budget=BIG)).workload.unix_peers
    assert got == ("/dev/log", "@abstract log")


def _query(**changes: object) -> str:
    obj = json.loads(encode_query(facts(), [], budget=BIG))
    for key, value in changes.items():
        if key.startswith("w_"):
            obj["workload"][key[2:]] = value
        else:
            obj[key] = value
    return json.dumps(obj)


@pytest.mark.parametrize("text", [
    "", "nope", "[]", "{}", "NaN",
    _query(v=4), _query(v=6), _query(extra=1),
    _query(unix_peers="/dev/log"), _query(unix_peers=["dev/log"]), _query(unix_peers=[1]),
    _query(unix_peers=["/a\0b"]),
    _query(locked="/a"), _query(locked=["relative"]), _query(locked=[7]),
    _query(locked=["/a\0b"]),
    _query(ptys=[-1]), _query(ptys=[1 << 20]), _query(ptys="0"),
    _query(ptys=[True]), _query(w_pid=-1), _query(w_pid=True),
    _query(w_pid=1.5),
    _query(w_pid=1 << 23), _query(w_comm=7), _query(w_comm="x" * 65), _query(w_rss=-1),
    _query(w_own_pid_ns=1), _query(w_extra=1), _query(workload=[]), _query(ids="1"),
    _query(ids=[0.5]), _query(files=[["rel/path", "fd", "f", 1, 1, 0, 0, 0, False]]),
    _query(files=[["/a", "door", "f", 1, 1, 0, 0, 0, False]]),
    _query(files=[["/a", "fd", "zz", 1, 1, 0, 0, 0, False]]),
    _query(files=[["/a", "fd", "f", -1, 1, 0, 0, 0, False]]),
    _query(files=[["/a", "fd", "f", 1, 1]]),
    _query(files=[["/a", "fd", "f", 1, 1, 0, 0, 0, 1]]),
    _query(files=[["/a", "fd", "f", 1, 1, -1, 0, 0, False]]),
    _query(files=[["/a", "fd", "f", 1, 1, 0, 0, 2**64, False]]),
    _query(files=[["/a\0b", "fd", "f", 1, 1, 0, 0, 0, False]]), _query(files=["/a"]),
    _query(sockets=[["sctp", "1.2.3.4", 1, "0.0.0.0", 0, "LISTEN"]]),
    _query(sockets=[["tcp", "1.2.3.999", 1, "0.0.0.0", 0, "LISTEN"]]),
    _query(sockets=[["tcp", "1.2.3.4", 65536, "0.0.0.0", 0, "LISTEN"]]),
    _query(sockets=[["tcp", "1.2.3.4", 1, "0.0.0.0", 0, "DANCING"]]),
    _query(sockets=[["tcp", "1.2.3.4", 1, "0.0.0.0", 0, ["LISTEN"]]]),
    _query(synced=["relative"]), _query(synced="/x"), _query(omitted_files=-3),
    _query(files=[["/a", "fd", "f", 1, 1, 0, 0, 0, False]] * 100_001),
])
def test_malformed_queries_are_remote_errors(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_query(text)
