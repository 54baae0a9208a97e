"""The page path: CRIU's TLS carries every page (encrypted, mutually authenticated), and
``migrate --max-bandwidth`` holds the rate on the wire, cold and post-copy (background push).

A wiretap in the destination's namespace (tests/support/wiretap.py) counts the bytes the
source sends it, outside the control connection, and looks for the workload's page pattern.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferryman import wire
from tests.integration.conftest import AGENT_PORT, PY, Cluster, run_cli
from tests.integration.test_agent_abuse import PS_IOV_CLOSE, planned, wait_for
from tests.integration.test_runc import RuncNodes, runc_nodes  # noqa: F401 (fixture)
from tests.support.bundle import wait_for as wait_until
from tests.support.peer import client_context, connect

WIRETAP = Path(__file__).resolve().parents[1] / "support" / "wiretap.py"
CAP_MBIT = 200
CAP = CAP_MBIT * 125_000  # bytes/s


@contextlib.contextmanager
def wiretap(cluster: Cluster, node: str, source: str, needle: bytes
            ) -> Iterator[dict[str, Any]]:
    """What ``node`` received from ``source`` while the block ran (see the module doc)."""
    out, ready = cluster.base / "wiretap.json", cluster.base / "wiretap.ready"
    proc = cluster.topology[node].popen(
        PY, str(WIRETAP), "--source", source, "--needle", needle.hex(), "--out", str(out),
        "--ready", str(ready), "--skip-port", str(AGENT_PORT))
    seen: dict[str, Any] = {}
    try:
        assert wait_for(ready.exists, timeout=20), "the wiretap did not start"
        yield seen
    finally:
        proc.terminate()
        proc.wait(20)
    seen.update(json.loads(out.read_text()))


def rates(seen: dict[str, Any], window: int = 10) -> tuple[float, float]:
    """(the busiest ``window`` tenths of a second, the mean from first to last byte), bytes/s."""
    buckets = {int(k): v for k, v in seen["buckets"].items()}
    first, last = min(buckets), max(buckets)
    peak = max(sum(buckets.get(t, 0) for t in range(start, start + window))
               for start in range(first, max(first, last - window + 1) + 1))
    return peak / (window / 10), seen["total"] / ((last - first + 1) / 10)


def pattern(seed: str) -> bytes:
    """32 bytes every page of the workload repeats (tests/support/workload.py)."""
    return hashlib.sha256(seed.encode()).digest()


def test_the_wiretap_sees_bytes_sent_in_the_clear(cluster: Cluster) -> None:
    """The control for the test below: the pattern in a plain UDP datagram from A is seen."""
    needle = pattern("control")
    with wiretap(cluster, "b", cluster.topology["a"].ip, needle) as seen:
        cluster.topology["a"].run(
            PY, "-c", "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
            ".sendto(bytes.fromhex(sys.argv[1]) * 8, (sys.argv[2], 9))",
            needle.hex(), cluster.topology["b"].ip)
        time.sleep(0.5)
    assert seen["needle_seen"]
    assert seen["total"] > 0


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_pages_are_capped_and_never_cross_in_the_clear(cluster: Cluster, mode: str) -> None:
    mib, seed = 64, f"paced-{mode}"
    b = cluster.start_agent("b")
    w = cluster.workload(mib=mib, seed=seed)
    new_pid = None
    try:
        with wiretap(cluster, "b", cluster.topology["a"].ip, pattern(seed)) as seen:
            # CRIU's own page path: --compress auto would take the relay here (a 200 Mbit/s
            # cap is slower than compressing the pattern; tests/integration/test_compress.py)
            res, report = cluster.migrate(w.pid, b, "--mode", mode, "--compress", "off",
                                          "--max-bandwidth", str(CAP_MBIT))
            assert res.returncode == 0, res.stderr
            new_pid = report["destination_pid"]
            assert isinstance(new_pid, int)
            st = w.status(new_pid)  # post-copy: every page has arrived once this answers
            assert st["bad_pages"] == 0
            assert st["pages"] == mib * 256
            time.sleep(0.3)
        assert report["max_bandwidth_bytes_per_s"] == CAP
        assert seen["total"] >= mib << 20, seen["total"]  # the tap saw the pages go by...
        assert not seen["needle_seen"], "page contents crossed the wire in the clear"
        peak, mean = rates(seen)
        assert peak <= 1.10 * CAP, f"{peak / 125_000:.0f} Mbit/s over a {CAP_MBIT} cap"
        assert mean >= 0.5 * CAP, f"only {mean / 125_000:.0f} Mbit/s under a {CAP_MBIT} cap"
        if mode == "postcopy":  # the background push was paced too
            complete = report["memory_complete_ms"]
            assert isinstance(complete, float)
            assert complete >= 0.9 * (mib << 20) / CAP * 1000
    finally:
        w.kill(new_pid)


def _answered(sock: socket.socket | ssl.SSLSocket) -> bool:
    """Whether the page server answered a close request on ``sock`` (its 4-byte status);
    a TLS alert (content type 21) or the connection's end is no answer."""
    try:
        sock.sendall(PS_IOV_CLOSE)
        reply = sock.recv(64)
    except (OSError, ssl.SSLError):
        return False
    return reply[:1] not in (b"", b"\x15")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["plaintext", "foreign CA"])
def test_the_page_server_speaks_only_tls_with_a_cluster_certificate(
        cluster: Cluster, rogue_pki: Path, how: str) -> None:
    """From the source's own address (past the port guard): a peer without TLS, or with a
    certificate of another CA, gets no answer from the migration's page server."""
    b = cluster.start_agent("b")
    p, ready = planned(cluster, b)
    try:
        assert isinstance(ready, wire.Ready), ready
        raw = connect(cluster.topology["a"].name, b.node.ip, ready.page_server_port)
        if how == "plaintext":
            with raw:
                assert not _answered(raw)
        else:
            with contextlib.suppress(OSError, ssl.SSLError), \
                    client_context(rogue_pki, "a").wrap_socket(raw) as s:
                assert not _answered(s)
        p.send(wire.Abort("done"))
        assert isinstance(p.recv(), wire.Aborted)
    finally:
        p.close()


def test_a_cap_needs_a_criu_that_can_pace(cluster: Cluster, tmp_path: Path) -> None:
    """An unpatched criu would ignore FERRYMAN_PAGE_RATE: migrate refuses before it connects."""
    fake = tmp_path / "criu"
    fake.write_text("#!/bin/sh\nexec criu \"$@\"\n")
    fake.chmod(0o755)
    w = cluster.workload(mib=8, seed="unpaced")
    try:
        res = run_cli("migrate", str(w.pid), "--to", "10.77.0.250:7070", "--pki", str(cluster.pki),
                      "--name", "a", "--state-dir", str(tmp_path / "src"), "--max-bandwidth",
                      "200", "--criu", str(fake), node=cluster.topology["a"])
        assert res.returncode != 0
        assert "cannot cap the page transfer" in res.stderr, res.stderr
        assert w.status()["bad_pages"] == 0  # untouched, still here
        bad = run_cli("migrate", str(w.pid), "--to", "10.77.0.250:7070", "--pki",
                      str(cluster.pki), "--name", "a", "--max-bandwidth", "0",
                      node=cluster.topology["a"])
        assert bad.returncode != 0
        assert "--max-bandwidth must be 1..34000 Mbit/s, got 0" in bad.stderr, bad.stderr
    finally:
        w.kill()


def test_a_containers_pages_are_capped_too(runc_nodes: RuncNodes) -> None:  # noqa: F811
    """runc's criu gets the cap through runc's environment, like CRIU_CONFIG_FILE."""
    cluster = runc_nodes.cluster
    line = b"ferryman-page-path\n"
    c = runc_nodes.run("paced", ["sh", "-c", "v=$(busybox yes ferryman-page-path | "
                                 "busybox head -c 48000000); echo ready > /data/ready; "
                                 "sleep 1000; echo ${#v}"])
    wait_until((c.bundle / "rootfs" / "data" / "ready").exists, what="its 48 MB of memory")
    b = runc_nodes.start_b()
    with wiretap(cluster, "b", cluster.topology["a"].ip, line * 3) as seen:
        res, report = runc_nodes.migrate("paced", b, "--max-bandwidth", str(CAP_MBIT))
        assert res.returncode == 0, res.stderr
        runc_nodes.on_b("paced")
    assert report["max_bandwidth_bytes_per_s"] == CAP
    assert seen["total"] >= 40_000_000, seen["total"]
    assert not seen["needle_seen"], "page contents crossed the wire in the clear"
    peak, mean = rates(seen)
    assert peak <= 1.10 * CAP, f"{peak / 125_000:.0f} Mbit/s over a {CAP_MBIT} cap"
    assert mean >= 0.5 * CAP, f"only {mean / 125_000:.0f} Mbit/s under a {CAP_MBIT} cap"
