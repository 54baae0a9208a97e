"""The container as the Plan describes it: written by the source, checked by the destination."""

from __future__ import annotations

import json

import pytest

from ferryman.agent.container import PlannedContainer
from ferryman.errors import RemoteProtocolError


def test_round_trip() -> None:
    p = PlannedContainer("web-1", "/srv/b/web-1", ("/srv/b/web-1", "/srv/roots/web-1"))
    assert PlannedContainer.from_json(p.to_json()) == p


@pytest.mark.parametrize("target", [
    "not json",
    json.dumps(["runc"]),
    json.dumps({"kind": "lxd", "id": "c", "bundle": "/b", "sync": ["/b"]}),
    json.dumps({"kind": "runc", "id": "c", "bundle": "/b", "sync": []}),
    json.dumps({"kind": "runc", "id": "c", "bundle": "/b", "sync": ["/other"]}),
    json.dumps({"kind": "runc", "id": "../c", "bundle": "/b", "sync": ["/b"]}),
    json.dumps({"kind": "runc", "id": "c", "bundle": "b", "sync": ["b"]}),
    json.dumps({"kind": "runc", "id": "c", "bundle": "/", "sync": ["/"]}),
    json.dumps({"kind": "runc", "id": "c", "bundle": "/b/../etc", "sync": ["/b/../etc"]}),
    json.dumps({"kind": "runc", "id": "c", "bundle": "/b", "sync": ["/b", 3]}),
    json.dumps({"kind": "runc", "id": "c", "bundle": "/b", "sync": ["/b"] + ["/x"] * 8}),
])
def test_the_destination_refuses_malformed_targets(target: str) -> None:
    with pytest.raises(RemoteProtocolError):
        PlannedContainer.from_json(target)
