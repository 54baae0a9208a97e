"""Podman containers between namespace nodes: real Podman, runc, criu and agents.

Each node has a Podman state of its own (tests/support/podman.py). After a committed move,
Podman on B lists the container running with its name, image, labels and published port, and
Podman on A no longer has it; after a rollback, Podman's view on A is what it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import PY, Agent, Cluster, Report
from tests.integration.test_cold import one_error_line
from tests.integration.test_runc import service_address  # noqa: F401 - the fixture
from tests.integration.test_tcp import (
    MOVABLE,
    PORT,
    SERVICE,
    _client,
    address_moved,
    client_kept_talking,
)
from tests.support.bundle import remove_cgroup_jail, wait_for
from tests.support.podman import (
    CGROUP_PARENT,
    IMAGE,
    NETWORK_STATE,
    PodmanNode,
    busybox_tar,
    make_node,
)

COUNTER = "i=0; while :; do i=$((i+1)); echo $i >> /data/log; usleep 20000; done"
EXIT_ROLLED_BACK = 8
EXIT_PREFLIGHT = 40


@dataclass
class PodmanNodes:
    cluster: Cluster
    a: PodmanNode
    b: PodmanNode
    jail: str

    def start_b(self, env: dict[str, str] | None = None) -> Agent:
        agent = self.cluster.start_agent("b", cgroup=self.jail, private=(NETWORK_STATE,),
                                         env={**self.b.env, **(env or {})})
        self.b.mount_pid = agent.proc.pid
        return agent

    def counter(self, name: str, writes: int) -> str:
        """A counting container on A with a label and a published port; its id."""
        res = self.a.podman("run", "--detach", "--name", name, "--label", "app=counter",
                            "--label", "ferryman.test=1", "--publish", "8080:5000",
                            "--cgroup-parent", CGROUP_PARENT, IMAGE, "sh", "-c", COUNTER)
        wait_for(lambda: len(self.lines_a(name)) >= writes, what="the container's writes")
        return res.stdout.strip()

    def lines_a(self, name: str) -> list[str]:
        return _lines(self.a, name)

    def migrate(self, name: str, dest: Agent, *extra: str
                ) -> tuple[subprocess.CompletedProcess[str], Report]:
        report = self.cluster.base / f"report-{name}.json"
        argv = self.cluster.topology["a"].argv(
            PY, "-m", "ferryman", "migrate", "--podman", name, "--runc-root",
            str(self.a.runc_root), "--to", dest.endpoint, "--pki", str(self.cluster.pki),
            "--name", "a", "--state-dir", str(self.cluster.base / "state-src-a"),
            "--report", str(report), *extra)
        res = subprocess.run(argv, env=self.a.env, capture_output=True, text=True,
                             timeout=300, check=False)
        data = json.loads(report.read_text()) if report.exists() else {}
        return res, data


def _lines(node: PodmanNode, name: str) -> list[str]:
    info = node.inspect(name)
    if info is None:
        return []
    pid = info["State"]["Pid"]  # type: ignore[index]
    try:
        return Path(f"/proc/{pid}/root/data/log").read_text().split()
    except OSError:
        return []


@pytest.fixture
def podman_nodes(cluster: Cluster) -> Iterator[PodmanNodes]:
    tag = f"fm-pm-{os.getpid()}"
    image = busybox_tar(cluster.base / "busybox.tar")
    run = Path("/run") / tag
    a = make_node(cluster.topology["a"], cluster.base / "podman-a", run / "a", image)
    b = make_node(cluster.topology["b"], cluster.base / "podman-b", run / "b", image)
    nodes = PodmanNodes(cluster, a, b, f"fm-test-pm-{os.getpid()}")
    try:
        yield nodes
    finally:
        b.clean()  # in B's agent's mount namespace while it lives: B's network state
        for agent in cluster.agents:
            agent.kill()
        a.clean()
        shutil.rmtree(run, ignore_errors=True)
        remove_cgroup_jail(nodes.jail)


def _view(node: PodmanNode, name: str) -> dict[str, object]:
    """What `podman ps` says of ``name`` (one entry), the fields a person reads."""
    rows = [r for r in node.ps() if name in r["Names"]]  # type: ignore[operator]
    assert len(rows) == 1, rows
    r = rows[0]
    ports = [(p["host_port"], p["container_port"], p["protocol"])  # type: ignore[index]
             for p in r.get("Ports") or []]  # type: ignore[attr-defined]
    return {"Id": r["Id"], "Names": r["Names"], "Image": r["Image"], "State": r["State"],
            "Labels": r["Labels"], "Ports": ports, "Pid": r["Pid"]}


def _stable(node: PodmanNode) -> list[dict[str, object]]:
    """`podman ps -a` without its relative times ("3 seconds ago")."""
    keep = ("Id", "Names", "Image", "ImageID", "State", "Pid", "Labels", "Ports", "Exited",
            "ExitCode", "StartedAt", "Networks", "Command")
    return [{k: r.get(k) for k in keep} for r in node.ps(all_=True)]


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_move_leaves_the_container_podmans_own_on_b(podman_nodes: PodmanNodes,
                                                    mode: str) -> None:
    b = podman_nodes.start_b()
    name = f"counter-{mode}"
    cid = podman_nodes.counter(name, 25)
    before = _view(podman_nodes.a, name)
    res, report = podman_nodes.migrate(name, b, "--mode", mode)
    assert res.returncode == 0, res.stderr + res.stdout + b.log()
    assert report["result"] == "committed"
    assert report["container"] == name
    assert podman_nodes.a.inspect(name) is None, "A's record is removed after the commit"
    after = _view(podman_nodes.b, name)
    assert after["State"] == "running"
    for key in ("Id", "Names", "Image", "Labels", "Ports"):
        assert after[key] == before[key], key
    assert after["Id"] == cid
    assert after["Ports"] == [(8080, 5000, "tcp")]
    assert after["Labels"] == {"app": "counter", "ferryman.test": "1"}
    frozen = report["destination_pid"]
    assert frozen == after["Pid"], "the PID ferryman resumed is the one Podman knows"
    time.sleep(0.5)
    lines = _lines(podman_nodes.b, name)
    assert lines == [str(i) for i in range(1, len(lines) + 1)], "nothing lost or doubled"
    assert len(lines) > 25 + 5, "it keeps writing on B, in B's rootfs"
    # Podman on B manages it: stop works and says it exited
    podman_nodes.b.podman("stop", "--time", "1", name)
    assert podman_nodes.b.inspect(name)["State"]["Status"] == "exited"  # type: ignore[index]
    sync = report["sync"]
    assert isinstance(sync, dict)
    print(f"{mode}: downtime {report['downtime_ms']:.0f} ms, total {report['total_ms']:.0f} ms, "
          f"export {sync.get('podman_export_ms', 0):.0f} ms, rootfs diff "
          f"{sync.get('rootfs_diff_ms', 0):.0f} ms")


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_restore_failure_leaves_podmans_view_on_a_unchanged(
        podman_nodes: PodmanNodes, mode: str) -> None:
    """B's runtime fails at restore (a wrapper): the frozen container resumes on A, with
    every write, and `podman ps` on A says what it said before; B keeps nothing."""
    wrapper = podman_nodes.b.home / "runc"
    wrapper.write_text('#!/bin/sh\ncase " $* " in *" restore "*) exit 1 ;; esac\n'
                       + wrapper.read_text().split("\n", 1)[1])
    b = podman_nodes.start_b()
    name = f"counter-rollback-{mode}"
    podman_nodes.counter(name, 25)
    before = _stable(podman_nodes.a)
    res, report = podman_nodes.migrate(name, b, "--mode", mode)
    assert res.returncode == EXIT_ROLLED_BACK, res.stderr + res.stdout
    assert one_error_line(res.stderr), res.stderr
    assert "podman restore" in res.stderr
    assert report["result"] == "rolled_back"
    assert _stable(podman_nodes.a) == before, "Podman's view on A is unchanged"
    lines = podman_nodes.lines_a(name)
    time.sleep(0.5)
    after = podman_nodes.lines_a(name)
    assert len(after) > len(lines) + 5, "it runs on A again"
    assert after == [str(i) for i in range(1, len(after) + 1)], "nothing lost or doubled"
    assert podman_nodes.b.ps(all_=True) == [], "B keeps no record"


def _check(nodes: PodmanNodes, name: str, dest: Agent) -> tuple[int, dict[str, object]]:
    argv = nodes.cluster.topology["a"].argv(
        PY, "-m", "ferryman", "check", "--podman", name, "--runc-root",
        str(nodes.a.runc_root), "--to", dest.endpoint, "--pki", str(nodes.cluster.pki),
        "--name", "a", "--state-dir", str(nodes.cluster.base / "state-src-a"), "--json")
    res = subprocess.run(argv, env=nodes.a.env, capture_output=True, text=True, timeout=120,
                         check=False)
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}


def _rows(out: dict[str, object]) -> dict[str, str]:
    rows = out["rows"]
    assert isinstance(rows, list)
    return {f"{r['side']}:{r['check']}": r["status"] for r in rows}


def test_check_says_what_podman_on_each_node_lacks(podman_nodes: PodmanNodes) -> None:
    """check --podman: every row passes; then B loses the image and gets a container of the
    same name: those rows fail (exit 40), and migrate refuses before anything freezes."""
    b = podman_nodes.start_b()
    name = "counter-check"
    podman_nodes.counter(name, 5)
    rc, out = _check(podman_nodes, name, b)
    assert rc == 0, out
    rows = _rows(out)
    for row in ("source:container", "source:runtime", "source:podman.cgroup-manager",
                "destination:podman", "destination:podman.cgroup-manager",
                "destination:podman.image", "destination:podman.container"):
        assert rows[row] == "pass", (row, out)
    podman_nodes.b.podman("rmi", "--force", IMAGE)
    rootfs = podman_nodes.cluster.base / "other-rootfs"  # a container without that image
    rootfs.mkdir()
    podman_nodes.b.podman("create", "--name", name, "--rootfs", str(rootfs), "true")
    rc, out = _check(podman_nodes, name, b)
    assert rc == EXIT_PREFLIGHT, out
    rows = _rows(out)
    assert rows["destination:podman.image"] == "fail"
    assert rows["destination:podman.container"] == "fail"
    assert rows["source:container"] == "pass"
    before = _stable(podman_nodes.a)
    lines = podman_nodes.lines_a(name)
    res, report = podman_nodes.migrate(name, b)
    assert res.returncode != 0
    assert one_error_line(res.stderr), res.stderr
    assert "has no image" in res.stderr
    assert report["result"] == "failed"  # nothing was frozen
    assert _stable(podman_nodes.a) == before
    time.sleep(0.3)
    assert len(podman_nodes.lines_a(name)) > len(lines) + 5, "it kept running on A"


@pytest.mark.usefixtures("service_address")  # SERVICE on A's eth0
@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_echo_container_keeps_its_tcp_client_and_service_address(
        podman_nodes: PodmanNodes, mode: str) -> None:
    """An echo service in the node's network (Podman's host network), a client in C talking to
    it through the service address: after the move (live connection, address moved) the client
    saw only a gap, and Podman on B lists the container running."""
    b = podman_nodes.cluster.start_agent("b", *MOVABLE, cgroup=podman_nodes.jail,
                                         private=(NETWORK_STATE,), env=podman_nodes.b.env)
    podman_nodes.b.mount_pid = b.proc.pid
    name = f"echo-{mode}"
    podman_nodes.a.podman("run", "--detach", "--name", name, "--label", "app=echo",
                          "--network", "host", "--cgroup-parent", CGROUP_PARENT, IMAGE,
                          "nc", "-l", "-p", str(PORT), "-e", "cat")
    podman_nodes.cluster.topology["a"].wait_listening(PORT)
    out = podman_nodes.cluster.base / "client.json"
    client = _client(podman_nodes.cluster, out, duration=12)
    time.sleep(1)
    res, report = podman_nodes.migrate(name, b, "--mode", mode, "--tcp-established",
                                       "--move-address", f"{SERVICE}/24@eth0")
    assert res.returncode == 0, res.stderr + res.stdout + b.log()
    assert podman_nodes.a.inspect(name) is None
    assert client.poll() is None, "the client must still be talking after the migration"
    view = _view(podman_nodes.b, name)  # (it exits when the client hangs up)
    assert view["State"] == "running"
    assert view["Labels"] == {"app": "echo"}
    client.wait(60)
    result = client_kept_talking(out, 5000)
    address_moved(podman_nodes.cluster.topology, SERVICE)
    print(f"{mode}: client-observed gap {result['max_gap_ms']:.0f} ms, ferryman downtime "
          f"{report['downtime_ms']:.0f} ms")


@pytest.mark.usefixtures("service_address")  # SERVICE on A's eth0
@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_client_through_a_published_port_keeps_its_connection(
        podman_nodes: PodmanNodes, mode: str) -> None:
    """The echo service in Podman's bridge network, published on the node's port; the client
    talks to the service address, A's DNAT takes it to the container. On B the container's
    segments are held until the client's first one went through B's DNAT: the client saw
    only a gap, nothing lost."""
    b = podman_nodes.cluster.start_agent("b", *MOVABLE, cgroup=podman_nodes.jail,
                                         private=(NETWORK_STATE,), env=podman_nodes.b.env)
    podman_nodes.b.mount_pid = b.proc.pid
    name = f"published-{mode}"
    podman_nodes.a.podman("run", "--detach", "--name", name, "--publish", f"{PORT}:{PORT}",
                          "--cgroup-parent", CGROUP_PARENT, IMAGE,
                          "nc", "-l", "-p", str(PORT), "-e", "cat")
    time.sleep(1)
    out = podman_nodes.cluster.base / "client.json"
    client = _client(podman_nodes.cluster, out, duration=12)
    time.sleep(1)
    res, report = podman_nodes.migrate(name, b, "--mode", mode, "--tcp-established",
                                       "--move-address", f"{SERVICE}/24@eth0")
    assert res.returncode == 0, res.stderr + res.stdout + b.log()
    assert client.poll() is None, "the client must still be talking after the migration"
    view = _view(podman_nodes.b, name)  # (it exits when the client hangs up)
    assert view["State"] == "running"
    assert view["Ports"] == [(PORT, PORT, "tcp")]
    client.wait(60)
    result = json.loads(out.read_text())
    assert result["error"] is None, (result, b.log())
    assert result["bad"] == 0, result
    assert result["answered"] == result["sent"]
    assert "went through the DNAT here" in b.log()
    assert "ferryman-pm-" not in podman_nodes.cluster.topology["b"].run(
        "nft", "list", "tables").stdout, "the hold is lifted"
    print(f"{mode}: client-observed gap {result['max_gap_ms']:.0f} ms through the published "
          f"port, ferryman downtime {report['downtime_ms']:.0f} ms")


@pytest.mark.parametrize(("ballast_mb", "mode"), [(0, "cold"), (200, "postcopy")])
def test_ferryman_and_podmans_own_export_and_import_keep_the_client(
        podman_nodes: PodmanNodes, ballast_mb: int, mode: str) -> None:
    """The same echo container moved twice, same run, same client: by ferryman (cold), and by
    hand with Podman's own tools (`podman container checkpoint --export --tcp-established`,
    `ip addr del` on A, on B an nftables drop of the port, `ip addr add`, `podman container
    restore --import --tcp-established`, the drop removed, a gratuitous ARP as `arping -U`
    sends): both keep the client, nothing lost; the client's longest gaps are printed (README,
    "Podman containers")."""
    a = podman_nodes.cluster.topology["a"]
    b_node = podman_nodes.cluster.topology["b"]
    for n in podman_nodes.cluster.topology.nodes.values():
        n.run("ip", "neigh", "flush", "dev", "eth0", check=False)
    gaps = {}
    for how in ("ferryman", "podman"):
        a.run("ip", "addr", "add", f"{SERVICE}/24", "dev", "eth0")
        b = podman_nodes.cluster.start_agent("b", *MOVABLE, cgroup=podman_nodes.jail,
                                             private=(NETWORK_STATE,), env=podman_nodes.b.env)
        podman_nodes.b.mount_pid = b.proc.pid
        name = f"echo-{how}"
        # the echo service under an awk holding ``ballast_mb`` MB of memory
        ballast = (f'BEGIN {{ s = sprintf("%{ballast_mb * 1000000}s", ""); '
                   f'system("nc -l -p {PORT} -e cat") }}')
        podman_nodes.a.podman("run", "--detach", "--name", name, "--network", "host",
                              "--cgroup-parent", CGROUP_PARENT, IMAGE, "awk", ballast)
        a.wait_listening(PORT, timeout=60)
        out = podman_nodes.cluster.base / f"client-{how}.json"
        client = _client(podman_nodes.cluster, out, duration=10 + ballast_mb / 20)
        time.sleep(1)
        t0 = time.monotonic()
        if how == "ferryman":
            res, _ = podman_nodes.migrate(name, b, "--mode", mode, "--tcp-established",
                                          "--move-address", f"{SERVICE}/24@eth0")
            assert res.returncode == 0, res.stderr
        else:
            archive = podman_nodes.cluster.base / "by-hand.tar"
            podman_nodes.a.podman("container", "checkpoint", "--export", str(archive),
                                  "--tcp-established", name)
            a.run("ip", "addr", "del", f"{SERVICE}/24", "dev", "eth0")
            # segments reaching B before the restore would be answered with a reset: held off
            b_node.run("nft", "add table inet fmhand { chain in { type filter hook input "
                       f"priority 0; tcp dport {PORT} drop; }}; }}")
            b_node.run("ip", "addr", "add", f"{SERVICE}/24", "dev", "eth0")
            podman_nodes.b.podman("container", "restore", "--import", str(archive),
                                  "--tcp-established")
            b_node.run("nft", "delete", "table", "inet", "fmhand")
            b_node.run(PY, "-c", "from ferryman.host.addresses import MoveAddress, announce; "
                       f"announce(MoveAddress('{SERVICE}', 24, 'eth0'))")  # arping -U
        took = time.monotonic() - t0
        client.wait(60)
        result = json.loads(out.read_text())
        assert result["error"] is None, (how, result)
        assert result["bad"] == 0, (how, result)
        gaps[how] = float(result["max_gap_ms"])
        print(f"{how} ({ballast_mb} MB, {mode if how == 'ferryman' else 'export'}): client "
              f"gap {gaps[how]:.0f} ms (move took {took * 1000:.0f} ms)")
        podman_nodes.b.clean_containers()
        b.kill()
        b_node.run("ip", "addr", "del", f"{SERVICE}/24", "dev", "eth0", check=False)
        for n in podman_nodes.cluster.topology.nodes.values():
            n.run("ip", "neigh", "flush", "dev", "eth0", check=False)
    print(f"ferryman / podman's own: {gaps['ferryman'] / gaps['podman']:.2f}")
