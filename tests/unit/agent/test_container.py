"""The container as the Plan describes it: written by the source, checked by the destination."""

from __future__ import annotations

import json

import pytest

from ferryman.agent.container import PlannedContainer
from ferryman.errors import RemoteProtocolError


def test_round_trip() -> None:
    for p in (PlannedContainer("web-1", "rootfs"), PlannedContainer("web-1", None)):
        assert PlannedContainer.from_json(p.to_json()) == p


@pytest.mark.parametrize("target", [
    "not json",
    json.dumps(["runc"]),
    json.dumps({"kind": "lxd", "id": "c", "rootfs": "rootfs"}),
    json.dumps({"kind": "runc", "id": "../c", "rootfs": "rootfs"}),
    json.dumps({"kind": "runc", "id": "c"}),
    json.dumps({"kind": "runc", "id": "c", "rootfs": 3}),
    json.dumps({"kind": "runc", "id": "c", "rootfs": "/etc"}),
    json.dumps({"kind": "runc", "id": "c", "rootfs": "../../etc"}),
    # paths on the destination are the destination's to choose, not the source's
    json.dumps({"kind": "runc", "id": "c", "rootfs": "rootfs", "bundle": "/b"}),
    json.dumps({"kind": "runc", "id": "c", "rootfs": "rootfs", "sync": ["/etc"]}),
    json.dumps({"kind": "runc", "id": "c", "bundle": "/b", "sync": ["/b"]}),
])
def test_the_destination_refuses_malformed_targets(target: str) -> None:
    with pytest.raises(RemoteProtocolError):
        PlannedContainer.from_json(target)
