"""The fuzzer's agent: node b of the integration tests' namespaces, its marker tree, its watch.

The namespace, PKI and cluster fixtures are the integration tests' own (real agents, real TLS).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fuzz.player import Player
from tests.fuzz.watch import AgentWatch
from tests.integration.conftest import (  # noqa: F401 - fixtures, used by name
    AGENT_PORT,
    Agent,
    Cluster,
    cluster,
    criu_bin,
    pki,
    topology,
)
from tests.support.peer import Peer

MARKER_DIRS = ("deep/er", "x", "y/z")


@dataclass
class FuzzTarget:
    """An agent under fuzz and what the fuzzer watches around it."""

    cluster: Cluster
    marker: Path
    token: str
    cwd: Path  # the agent's working directory (a relative path it opens would land here)
    agent: Agent | None = None

    def start(self) -> AgentWatch:
        """Start agent b (again, after a finding) and a watch over it."""
        agent = self.agent = self.cluster.start_agent("b", cwd=self.cwd)
        watched = (Path("/"), Path("/tmp"), self.cluster.base, self.cwd, agent.state_dir,
                   agent.state_dir / "migrations", agent.state_dir.parent.parent)
        return AgentWatch(agent.proc, agent.state_dir, agent.log_path, self.marker, self.token,
                          tuple(p for p in watched if p.is_dir()),
                          owned=(self.cluster.base, self.cwd))

    def cpuinfo(self) -> bytes:
        """The agent's own CPU image, from its Hello: a Plan carrying it passes the CPU check."""
        with Peer(self.cluster.topology["a"].name, self.node_ip, AGENT_PORT,
                  self.cluster.pki) as p:
            return p.hello().cpuinfo

    def player(self) -> Player:
        """Sessions from node a's namespace, with its certificate (or node c's)."""
        return Player(self.cluster.topology["a"].name, self.node_ip, AGENT_PORT,
                      self.cluster.pki)

    @property
    def node_ip(self) -> str:
        return self.cluster.topology["b"].ip


@pytest.fixture
def fuzz_target(cluster: Cluster) -> Iterator[FuzzTarget]:  # noqa: F811
    token = f"fzmark{uuid.uuid4().hex[:10]}"
    marker = Path("/tmp") / token
    for d in MARKER_DIRS:
        (marker / d).mkdir(parents=True)
    cwd = cluster.base / "agent-cwd"
    cwd.mkdir()
    try:
        yield FuzzTarget(cluster, marker, token, cwd)
    finally:
        for p in sorted(marker.rglob("*"), reverse=True):
            if p.is_dir() and not p.is_symlink():
                p.rmdir()
            else:
                p.unlink()
        marker.rmdir()
