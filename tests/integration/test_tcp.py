"""Live TCP connections and a moving service address: a client in node C keeps talking."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Cluster
from tests.integration.test_cold import one_error_line
from tests.support.netns import Node
from tests.support.workloads import alive, children

ECHO = Path(__file__).parents[1] / "support" / "echo.py"
SERVICE = "10.77.0.100"
MOVABLE = ("--movable-addresses", "10.77.0.0/24@eth0")  # B's agent may take SERVICE up
PORT = 7000


@pytest.fixture
def service_address(cluster: Cluster) -> Iterator[str]:
    a, b = cluster.topology["a"], cluster.topology["b"]
    nodes = list(cluster.topology.nodes.values())
    for n in nodes:  # an earlier test may have moved the address: forget where it was
        n.run("ip", "neigh", "flush", "dev", "eth0", check=False)
    a.run("ip", "addr", "add", f"{SERVICE}/24", "dev", "eth0")
    try:
        yield SERVICE
    finally:
        for n in (a, b):
            n.run("ip", "addr", "del", f"{SERVICE}/24", "dev", "eth0", check=False)
        for n in nodes:
            n.run("ip", "neigh", "flush", "dev", "eth0", check=False)


def _has(node: Node, ip: str) -> bool:
    return f"inet {ip}/" in node.run("ip", "-4", "addr", "show", "dev", "eth0").stdout


def client_kept_talking(out: Path, max_gap_ms: float) -> dict[str, Any]:
    """The echo client's result file after a move: no error, nothing lost, duplicated or out
    of order, every request answered (more than 100: it kept talking after the move too),
    the longest gap it saw under ``max_gap_ms``."""
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["error"] is None, result
    assert result["bad"] == 0, result
    assert result["answered"] == result["sent"]
    assert int(result["answered"]) > 100
    assert float(result["max_gap_ms"]) < max_gap_ms
    return result


def address_moved(topology: Mapping[str, Node], address: str) -> None:
    """The service address is on B and gone from A."""
    assert _has(topology["b"], address)
    assert not _has(topology["a"], address)


def no_network_lock(node: Node) -> bool:
    """CRIU's nftables lock of a moved connection is gone from the source (host/netlock.py)."""
    return "CRIU-" not in node.run("nft", "list", "tables").stdout


def _start_server(cluster: Cluster, ballast_mib: int = 0) -> tuple[subprocess.Popen[bytes], int]:
    a = cluster.topology["a"]
    launcher = a.popen("unshare", "-p", "-f", "setsid", sys.executable, str(ECHO), "serve",
                       "--bind", f"{SERVICE}:{PORT}", "--ballast-mib", str(ballast_mib),
                       stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a.wait_listening(PORT, proc=launcher)
    return launcher, children(launcher.pid)[0]


def _client(cluster: Cluster, out: Path, duration: float) -> subprocess.Popen[bytes]:
    """The client in node C, once its connection is established."""
    log_path = out.with_suffix(".log")
    with log_path.open("wb") as log:
        proc = cluster.topology["c"].popen(
            sys.executable, str(ECHO), "client", "--to", f"{SERVICE}:{PORT}", "--interval-ms",
            "10", "--duration", str(duration), "--out", str(out), stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while b"connected" not in log_path.read_bytes():
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "the client did not connect"
        time.sleep(0.01)
    return proc


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_tcp_connection_survives_migration_with_its_address(
        cluster: Cluster, service_address: str, mode: str) -> None:
    b = cluster.start_agent("b", *MOVABLE)
    launcher, pid = _start_server(cluster)
    out = cluster.base / "client.json"
    new_pid = None
    try:
        client = _client(cluster, out, duration=12)
        time.sleep(1)
        res, report = cluster.migrate(pid, b, "--mode", mode, "--tcp-established",
                                      "--move-address", f"{SERVICE}/24@eth0",
                                      "--probe", f"tcp:{SERVICE}:{PORT}")
        assert res.returncode == 0, res.stderr
        probe = report["probe"]  # ferryman's own client, from node A's other address
        assert probe["error"] is None, probe
        assert probe["source"] == cluster.topology["a"].ip
        assert probe["answered"] == probe["sent"] >= 10  # it answered after the move too
        assert 0.5 * report["downtime_ms"] < probe["max_gap_ms"] < 3000, (probe, report)
        assert "client gap" in res.stdout
        assert client.poll() is None, "the client must still be talking after the migration"
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        client.wait(60)
        result = client_kept_talking(out, 3000)  # ARP announced: no neighbour timeout
        address_moved(cluster.topology, SERVICE)
        assert no_network_lock(cluster.topology["a"])
        print(f"{mode}: client-observed gap {result['max_gap_ms']:.0f} ms (in C), "
              f"{probe['max_gap_ms']:.0f} ms (probe), ferryman downtime "
              f"{report['downtime_ms']:.0f} ms")
    finally:
        for p in (pid, new_pid):
            if p and alive(p):
                subprocess.run(["kill", "-9", str(p)], check=False)
        launcher.wait(5)


def test_request_dropped_by_the_network_lock_is_forwarded_not_resent(
        cluster: Cluster, service_address: str) -> None:
    """A request that reaches the source after CRIU locked the connection is held there and
    sent on once the destination has restored (host/inflight.py), so the client does not wait
    for its retransmission; C's route makes that wait at least 3 s."""
    a, c = cluster.topology["a"], cluster.topology["c"]
    c.run("ip", "route", "add", f"{SERVICE}/32", "dev", "eth0", "rto_min", "3s")
    b = cluster.start_agent("b", *MOVABLE)
    launcher, pid = _start_server(cluster, ballast_mib=256)  # a frozen window of ~1 s
    late = c.popen(sys.executable, str(ECHO), "late", "--to", f"{SERVICE}:{PORT}",
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert late.stdin is not None
    assert late.stdout is not None
    new_pid = None
    try:
        assert late.stdout.readline() == b"connected\n"
        with ThreadPoolExecutor(1) as pool:
            # page files: a streamed restore of this small tree can end its locked window
            # before the 100 ms this test waits into it (1 run of 2 did)
            migration = pool.submit(cluster.migrate, pid, b, "--mode", "cold",
                                    "--cold-restore", "images",
                                    "--tcp-established", "--move-address", f"{SERVICE}/24@eth0")
            # The request must land in the final dump's locked window: a lock seen for 100 ms
            # (the pre-flight's dry-run dump locks too, for a few ms).
            deadline = time.monotonic() + 60
            locked_at = None
            while locked_at is None or time.monotonic() - locked_at < 0.1:
                assert not migration.done(), migration.result()[0].stderr
                assert time.monotonic() < deadline, "CRIU never locked the connection"
                locked = not no_network_lock(a)
                locked_at = (locked_at or time.monotonic()) if locked else None
                time.sleep(0.005)
            late.stdin.write(b"go\n")
            late.stdin.flush()
            res, report = migration.result()
        assert res.returncode == 0, res.stderr
        new_pid = report["destination_pid"]
        result = json.loads(late.stdout.readline())
        assert result["error"] is None, result
        assert result["answer"] == "late\n"
        assert result["delay_ms"] < 2500, (result, report)  # not the 3 s retransmission
        assert report["forwarded_packets"] >= 1, report
        assert "held back" in res.stdout
        print(f"the late request was answered after {result['delay_ms']:.0f} ms; "
              f"{report['forwarded_packets']} segments forwarded")
    finally:
        c.run("ip", "route", "del", f"{SERVICE}/32", check=False)
        late.kill()
        late.wait(5)
        for p in (pid, new_pid):
            if p and alive(p):
                subprocess.run(["kill", "-9", str(p)], check=False)
        launcher.wait(5)


def test_probe_that_gets_no_answer_moves_nothing(cluster: Cluster,
                                                service_address: str) -> None:
    b = cluster.start_agent("b", *MOVABLE)
    launcher, pid = _start_server(cluster)
    try:
        res, _ = cluster.migrate(pid, b, "--tcp-established", "--probe", f"tcp:{SERVICE}:7001")
        assert res.returncode == 14, res.stderr
        assert one_error_line(res.stderr)
        assert f"probe tcp:{SERVICE}:7001: cannot connect: Connection refused" in res.stderr
        res, _ = cluster.migrate(pid, b, "--probe", f"tcp:{SERVICE}:{PORT}")
        assert res.returncode == 2
        assert "add --tcp-established" in res.stderr
        assert alive(pid)
        assert not list((cluster.base / "state-src-a").glob("migrations/*"))
    finally:
        subprocess.run(["kill", "-9", str(pid)], check=False)
        launcher.wait(5)


def test_address_already_on_destination_refuses_and_keeps_serving(
        cluster: Cluster, service_address: str) -> None:
    b = cluster.start_agent("b", *MOVABLE)
    launcher, pid = _start_server(cluster)
    out = cluster.base / "client.json"
    try:
        client = _client(cluster, out, duration=3)
        time.sleep(0.5)  # connected to A; now B gets the address too (and stays silent)
        cluster.topology["b"].run("ip", "addr", "add", f"{SERVICE}/24", "dev", "eth0")
        res, _ = cluster.migrate(pid, b, "--tcp-established", "--move-address",
                                 f"{SERVICE}/24@eth0")
        assert res.returncode != 0
        assert f"{SERVICE} is already present on b" in res.stderr
        assert alive(pid)
        client.wait(30)
        result = json.loads(out.read_text())
        assert result["error"] is None
        assert result["bad"] == 0
        assert float(result["max_gap_ms"]) < 1000, "nothing was frozen"
        assert _has(cluster.topology["a"], SERVICE)
    finally:
        subprocess.run(["kill", "-9", str(pid)], check=False)
        launcher.wait(5)
