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


@pytest.mark.timeout(60)
def test_peer_text_cannot_forge_an_agent_log_line(cluster: Cluster) -> None:
    """Finding 12: an Abort reason with a newline and escapes stays inside its own log line."""
    b = cluster.start_agent("b")
    forged = "2026-12-04 00:00:00,000 ferryman.agent.destination INFO migration forged committed"
    with peer(cluster, b) as p:
        p.hello()
        p.send(wire.Abort(f"ok\n{forged}\x1b[2J"))
        assert isinstance(p.recv(), wire.Aborted)
    assert wait_for(lambda: "forged committed" in b.log())
    lines = b.log().splitlines()
    assert not any(line.startswith(forged) for line in lines)
    assert not any("\x1b" in line for line in lines)
    assert any(line.endswith(f"before a plan: ok\\n{forged}\\x1b[2J") for line in lines)


@pytest.mark.timeout(60)
def test_a_peer_cannot_speak_as_another_node(cluster: Cluster) -> None:
    """Finding 11: certificate c saying it is node a gets an Error, not the agent's Hello."""
    b = cluster.start_agent("b")
    with peer(cluster, b, name="c") as p:
        p.send(wire.Hello(protocol_version=1, node="a", criu_version="4.2.1", features={},
                          cpuinfo=b"", free_memory=1 << 30, free_disk=1 << 30))
        answer = p.recv()
        assert isinstance(answer, wire.Error), answer
        assert answer.code == "identity"
        assert "'c'" in answer.message
        assert p.recv(5) is None  # and the session is over
    assert still_serves(cluster, b)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("agent_args", "spec"), [
    ((), "10.77.0.100/24@eth0"),  # the operator made nothing movable
    (("--movable-addresses", "10.77.0.0/24@eth0"), "192.0.2.77/1@lo"),  # the review's
    (("--movable-addresses", "10.77.0.0/24@eth0"), "10.77.0.100/1@eth0"),
    (("--movable-addresses", "10.77.0.0/24@eth0"), "10.77.0.100/24@lo"),
])
def test_plan_may_move_only_what_the_operator_made_movable(
        cluster: Cluster, agent_args: tuple[str, ...], spec: str) -> None:
    """Finding 6: a move_address outside ``serve --movable-addresses`` is Refused, and
    nothing reaches the node's addresses or routes."""
    b = cluster.start_agent("b", *agent_args)
    before = b.node.run("ip", "-4", "route", "show", "table", "all").stdout
    p, answer = planned(cluster, b, move_address=spec)
    p.close()
    assert isinstance(answer, wire.Refused), answer
    assert answer.code == "address"
    assert "--movable-addresses" in answer.message
    assert b.node.run("ip", "-4", "route", "show", "table", "all").stdout == before
    assert not (b.state_dir / "migrations").exists() or not any(b.migration_dirs())
