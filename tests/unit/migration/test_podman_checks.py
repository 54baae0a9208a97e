"""Pre-flight rows for Podman containers, pure: the query's checks and each row's outcome."""

from __future__ import annotations

import pytest

from ferryman.errors import RemoteProtocolError
from ferryman.migration.podman_checks import (
    DestinationFacts,
    PodmanQuery,
    SourceFacts,
    decode_query,
    destination_rows,
    encode_query,
    source_rows,
)
from ferryman.migration.verdict import Status, merge

Q = PodmanQuery("ab" * 32, "web", "sha256:" + "ff" * 32)


def _status(rows: list, check: str) -> list[Status]:  # type: ignore[type-arg]
    return [r.status for r in rows if r.check == check]


def test_query_round_trips_and_other_queries_are_not_podmans() -> None:
    assert decode_query(encode_query(Q)) == Q
    assert decode_query('{"workload":{"pid":1}}') is None
    assert decode_query("not json") is None
    with pytest.raises(RemoteProtocolError):
        decode_query('{"podman":{"id":"../etc","name":"web","image":"ff"}}')
    with pytest.raises(RemoteProtocolError):
        decode_query('{"podman":{"id":"ab","name":"web"}}')


def test_every_destination_row_passes_when_podman_there_is_ready() -> None:
    rows = destination_rows("b", Q, DestinationFacts(runtime="runc", cgroup_manager="cgroupfs",
                                                     image=True))
    assert {r.status for r in rows} == {Status.PASS}
    assert merge([], rows, ["cold"], "cold").can_move


def test_missing_image_and_taken_name_fail_with_their_fix() -> None:
    rows = destination_rows("b", Q, DestinationFacts(runtime="runc", cgroup_manager="systemd",
                                                     name_taken=True))
    assert _status(rows, "podman.image") == [Status.FAIL]
    assert _status(rows, "podman.container") == [Status.FAIL]
    assert _status(rows, "podman.cgroup-manager") == [Status.FAIL]
    image = next(r for r in rows if r.check == "podman.image")
    assert "podman save" in image.fix
    assert "ffffffffffff" in image.detail
    assert not merge([], rows, ["cold"], "cold").can_move


def test_no_podman_on_the_destination_is_one_row() -> None:
    rows = destination_rows("b", Q, DestinationFacts(problem="podman is not installed"))
    assert [(r.check, r.status) for r in rows] == [("podman", Status.FAIL)]


def test_source_rows_rule_out_only_the_modes_they_concern() -> None:
    facts = SourceFacts("web", 42, "localhost/x:1", "runc", "cgroupfs")
    rows = source_rows("a", facts, postcopy_blocker=None, dirty_tracking=False)
    v = merge(rows, [], ["cold", "postcopy", "precopy", "hybrid"], None)
    assert v.allowed_modes == ("cold", "postcopy")
    down = source_rows("a", SourceFacts("web", problem="the container is exited"),
                       postcopy_blocker="no userfaultfd", dirty_tracking=True)
    assert _status(down, "container") == [Status.FAIL]
    assert not merge(down, [], ["cold"], None).can_move
