"""An agent under abuse by a peer that holds a cluster certificate, or none at all.

Each test drives a real agent (a namespace node, real TLS) with a hand-driven peer
(tests/support/peer.py) doing what a real controller never would, and checks that the agent
stays within bounds and keeps serving. The outside review's findings (issue 16) each have one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from ferryman import wire
from tests.integration.conftest import AGENT_PORT, Agent, Cluster
from tests.support.peer import Peer, open_fds


def peer(cluster: Cluster, dest: Agent, name: str = "a", timeout: float = 20.0) -> Peer:
    """A session from node a's namespace to ``dest``, with certificate ``name``."""
    return Peer(cluster.topology["a"].name, dest.node.ip, AGENT_PORT, cluster.pki, name,
                timeout=timeout)


def agent_cpuinfo(cluster: Cluster, dest: Agent) -> bytes:
    """The agent's own CPU description: a Hello carrying it passes the Plan's CPU check."""
    with peer(cluster, dest) as p:
        theirs = p.hello()
        p.send(wire.Abort("probe"))
        p.recv()
    return theirs.cpuinfo


def planned(cluster: Cluster, dest: Agent, **plan: object) -> tuple[Peer, wire.Message | None]:
    """A session that sent Hello and a cold Plan; its answer to the Plan."""
    cpu = agent_cpuinfo(cluster, dest)
    p = peer(cluster, dest)
    p.hello(cpuinfo=cpu)
    fields: dict[str, object] = {"migration_id": f"abuse-{uuid.uuid4().hex[:8]}",
                                 "mode": "cold", "pid": 4242, "lazy": False, **plan}
    p.send(wire.Plan(**fields))  # type: ignore[arg-type]
    return p, p.recv()


def wait_for(what: Callable[[], bool], timeout: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def still_serves(cluster: Cluster, dest: Agent) -> bool:
    """A well-behaved session still gets the agent's Hello."""
    try:
        with peer(cluster, dest, timeout=10) as p:
            p.hello()
            p.send(wire.Abort("probe"))
            return isinstance(p.recv(), wire.Aborted)
    except OSError:
        return False


@pytest.mark.timeout(120)
def test_session_lost_mid_file_leaves_no_fd_open(cluster: Cluster) -> None:
    """Finding 2: files half received when the peer goes away are closed (and their disk freed)."""
    b = cluster.start_agent("b")
    p, ready = planned(cluster, b)
    assert isinstance(ready, wire.Ready), ready
    workdir = b.state_dir / "migrations"
    for i in range(20):
        p.send(wire.FileChunk(name=f"part-{i}.img", offset=0, data=b"x" * 65536))
    assert wait_for(lambda: sum(1 for _ in workdir.rglob("part-*.img")) == 20)
    p.close()
    assert wait_for(lambda: not any(workdir.iterdir())), "the migration directory stayed"
    leaked = [f for f in open_fds(b.proc.pid) if str(b.state_dir) in f]
    assert leaked == [], f"the agent still holds {len(leaked)} image files open: {leaked[:3]}"
    assert still_serves(cluster, b)
