"""The destination's files, containers and bookkeeping under abuse by a certified peer.

Like test_agent_abuse.py (whose hand-driven peer these tests share): a real agent on a
namespace node, real TLS, real rsync; the peer does what a real controller never would.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from ferryman import wire
from ferryman.fs import rsync
from tests.integration.conftest import PY, Agent, Cluster
from tests.integration.test_agent_abuse import planned, still_serves


def runc_agent(cluster: Cluster) -> Agent:
    """Agent b with a runc root of its own (it refuses container ids runc knows there)."""
    return cluster.start_agent("b", "--runc-root", str(cluster.base / "runc-b"))


def push(cluster: Cluster, dest: Agent, port: int, src: Path, into: str
         ) -> tuple[int, str]:
    """rsync from node a, through ferryman's TLS tunnel, ``src/`` into ``into`` on ``dest``."""
    p = cluster.pki
    rsh = rsync.tunnel_rsh(port, p / "ca.pem", p / "a.pem", p / "a.key", python=PY)
    res = cluster.topology["a"].run("rsync", *rsync.CLIENT_OPTIONS, "-e", " ".join(rsh),
                                    "--delete", f"{src}/", f"{dest.node.ip}:{into}/",
                                    check=False)
    return res.returncode, res.stderr


@pytest.mark.timeout(180)
def test_a_plan_cannot_make_the_destination_sync_outside_its_bundles(cluster: Cluster) -> None:
    """Finding 1: the destination syncs only into the container's own directories, which it
    chooses itself, and removes them when the migration does not commit."""
    victim = cluster.base / "outside" / "etc"  # stands for /etc, /root/.ssh, /usr/bin ...
    victim.mkdir(parents=True)
    (victim / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    src = cluster.base / "attacker"
    src.mkdir()
    (src / "pwned").write_text("written by a peer with a valid certificate\n")
    b = runc_agent(cluster)
    cid = f"box-{uuid.uuid4().hex[:6]}"
    slot = b.state_dir / "bundles" / cid
    targets = [{"kind": "runc", "id": cid, "bundle": str(victim), "sync": [str(victim)]},
               {"kind": "runc", "id": cid, "rootfs": "rootfs", "sync": [str(victim)]},
               {"kind": "runc", "id": cid, "rootfs": "../../../outside/etc"},
               {"kind": "runc", "id": cid, "rootfs": str(victim)},
               {"kind": "runc", "id": cid, "rootfs": "rootfs"}]
    answers = []
    for target in targets:
        p, answer = planned(cluster, b, target=json.dumps(target))
        with p:
            answers.append(type(answer).__name__)
            if isinstance(answer, wire.Ready) and answer.sync_port:
                for into in (str(victim), f"bundle/../../../../{victim}", "rootfs"):
                    rc, err = push(cluster, b, answer.sync_port, src, into)
                    assert rc != 0, f"rsync into {into} was let through"
                    assert "not part of the planned migration" in err, err
                rc, err = push(cluster, b, answer.sync_port, src, "bundle")
                assert rc == 0, err
                assert (slot / "bundle" / "pwned").exists(), "the bundle goes to its slot"
            if isinstance(answer, wire.Ready):
                p.send(wire.Abort("never mind"))
                assert isinstance(p.recv(), wire.Aborted)
    assert answers == ["Refused"] * 4 + ["Ready"]
    assert sorted(os.listdir(victim)) == ["passwd"], "files outside the slot were touched"
    assert not slot.exists(), "an aborted migration's synced files stay"
    assert still_serves(cluster, b)
