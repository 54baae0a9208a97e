"""A unix socket bound to a path both nodes see keeps its name through a rollback.

B's CRIU unlinks the socket file at the name it restores and binds its own socket there. On
one filesystem that took the name from the frozen source: a rolled-back workload was bound
to nothing its clients could reach.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.integration.conftest import Cluster
from tests.support.workloads import Workload, alive, start_unix_workload

EXIT_ROLLED_BACK = 8


def send(path: Path, text: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as c:
        c.sendto(text.encode(), str(path))


def received(w: Workload, pid: int | None = None) -> list[str]:
    got = w.status(pid)["received"]
    assert isinstance(got, list)
    return [str(x) for x in got]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".ferryman-" in p.name)


def test_a_rollback_gives_the_unix_socket_name_back(cluster: Cluster) -> None:
    b = cluster.start_agent("b", hide_dir=True)
    held = cluster.hidden_dir / "data.txt"
    held.write_text("only on node A\n")
    path = cluster.base / "srv.sock"
    w = start_unix_workload(cluster.topology["a"], cluster.base / "status.json", path,
                            hold_file=str(held))
    try:
        send(path, "before")
        # B's restore fails (the held file is not there); the pre-flight check would say so.
        res, report = cluster.migrate(w.pid, b, "--test-skip-preflight")
        assert res.returncode == EXIT_ROLLED_BACK, res.stderr
        assert report["result"] == "rolled_back"
        assert alive(w.pid)
        send(path, "after the rollback")
        assert received(w) == ["before", "after the rollback"]
        assert leftovers(cluster.base) == []
    finally:
        w.kill()


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_after_the_commit_the_name_is_the_destinations(cluster: Cluster, mode: str) -> None:
    b = cluster.start_agent("b")
    path = cluster.base / "srv.sock"
    w = start_unix_workload(cluster.topology["a"], cluster.base / "status.json", path)
    new_pid = None
    try:
        send(path, "before")
        res, report = cluster.migrate(w.pid, b, "--mode", mode)
        assert res.returncode == 0, res.stderr + res.stdout
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        send(path, "after the commit")
        assert received(w, new_pid) == ["before", "after the commit"]
        assert leftovers(cluster.base) == []
    finally:
        w.kill(new_pid)
