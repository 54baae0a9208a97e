"""runc containers between namespace nodes: real runc, real criu, real rsync, real agents.

The bundle lives in ``cluster.hidden_dir``: node B's agent sees an empty tmpfs there, so the
container's files reach B only through ferryman's rsync, into B's own bundle root
(``STATE_DIR/bundles/ID/bundle``). B's agent has a runc root and cgroups of its own, as a
second machine would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ferryman.host.filelocks import read_locks
from tests.integration.conftest import PY, Agent, Cluster, Report, run_cli
from tests.integration.test_cold import one_error_line
from tests.integration.test_tcp import (
    MOVABLE,
    PORT,
    SERVICE,
    _client,
    address_moved,
    client_kept_talking,
    no_network_lock,
)
from tests.support.bundle import (
    Container,
    make_bundle,
    remove_cgroup_jail,
    run_container,
    wait_for,
)

COUNTER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >> /data/log; usleep 20000; done"]
ECHO = ["nc", "-l", "-p", str(PORT), "-e", "cat"]
EXIT_NO_SUCH = 3
EXIT_ROLLED_BACK = 8
EXIT_RUNC = 12
EXIT_SYNC = 13
EXIT_PREFLIGHT = 40


@dataclass
class RuncNodes:
    cluster: Cluster
    root_a: Path
    root_b: Path
    jail: str
    containers: list[Container]

    def start_b(self) -> Agent:
        return self.cluster.start_agent("b", "--runc-root", str(self.root_b), *MOVABLE,
                                        hide_dir=True, cgroup=self.jail)

    def run(self, cid: str, args: list[str]) -> Container:
        bundle = make_bundle(self.cluster.hidden_dir / cid, args, self.cluster.topology["a"])
        c = run_container(self.cluster.topology["a"], self.root_a, bundle, cid)
        self.containers.append(c)
        return c

    def bundle_on_b(self, cid: str) -> Path:
        """Where B's agent keeps the container's bundle (its default bundle root)."""
        return self.cluster.base / "state-b" / "bundles" / cid / "bundle"

    def on_b(self, cid: str) -> Container:
        c = Container(cid, self.root_b, self.bundle_on_b(cid))
        self.containers.append(c)
        return c

    def counter(self, cid: str, writes: int) -> tuple[Container, Path]:
        """A COUNTER container on A, once it wrote ``writes`` lines; its log as A sees it."""
        c = self.run(cid, COUNTER)
        on_a = c.bundle / "rootfs" / "data" / "log"
        wait_for(lambda: len(_lines(on_a)) >= writes, what="the container's first writes")
        return c, on_a

    def migrate(self, cid: str, dest: Agent, *extra: str
                ) -> tuple[subprocess.CompletedProcess[str], Report]:
        report = self.cluster.base / f"report-{cid}.json"
        res = run_cli("migrate", "--runc", cid, "--runc-root", str(self.root_a), "--to",
                      dest.endpoint, "--pki", str(self.cluster.pki), "--name", "a",
                      "--state-dir", str(self.cluster.base / "state-src-a"), "--report",
                      str(report), *extra, node=self.cluster.topology["a"])
        data = json.loads(report.read_text()) if report.exists() else {}
        return res, data


@pytest.fixture
def runc_nodes(cluster: Cluster) -> Iterator[RuncNodes]:
    nodes = RuncNodes(cluster, cluster.base / "runc-a", cluster.base / "runc-b",
                      f"fm-test-b-{os.getpid()}", [])
    try:
        yield nodes
    finally:
        for c in nodes.containers:
            c.delete()
        for root in (nodes.root_a, nodes.root_b):  # also what a failed test never named
            for cid in (root.iterdir() if root.is_dir() else ()):
                Container(cid.name, root, cluster.hidden_dir / cid.name).delete()
        for a in cluster.agents:
            a.kill()
        remove_cgroup_jail(nodes.jail)


@pytest.fixture
def service_address(cluster: Cluster) -> Iterator[str]:
    """SERVICE on A's eth0 (neighbour caches flushed before and after), gone from A and B
    afterwards; as in test_tcp.py."""
    nodes = list(cluster.topology.nodes.values())
    for n in nodes:
        n.run("ip", "neigh", "flush", "dev", "eth0", check=False)
    cluster.topology["a"].run("ip", "addr", "add", f"{SERVICE}/24", "dev", "eth0")
    try:
        yield SERVICE
    finally:
        for n in nodes:
            n.run("ip", "addr", "del", f"{SERVICE}/24", "dev", "eth0", check=False)
            n.run("ip", "neigh", "flush", "dev", "eth0", check=False)


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_container_writing_its_rootfs_moves_with_every_write(runc_nodes: RuncNodes,
                                                             mode: str) -> None:
    b = runc_nodes.start_b()
    cid = f"counter-{mode}"
    c, on_a = runc_nodes.counter(cid, 25)
    res, report = runc_nodes.migrate(cid, b, "--mode", mode)
    assert res.returncode == 0, res.stderr + res.stdout
    assert report["result"] == "committed"
    assert report["container"] == cid
    assert c.state() is None, "the container must be gone from the source"
    moved = runc_nodes.on_b(cid)
    state = moved.state()
    assert state is not None
    assert state["status"] == "running"
    assert state["bundle"] == str(runc_nodes.bundle_on_b(cid)), "B chose where it lives"
    assert (runc_nodes.bundle_on_b(cid).parent / "restored").exists(), "no sweep removes it"
    before = _lines(on_a)  # A's copy stopped at the freeze
    on_b = Path(f"/proc/{moved.pid}/root/data/log")  # B's copy, seen from B's mounts
    time.sleep(0.5)
    after = _lines(on_b)
    assert after[:len(before)] == before, "every write made before the freeze is on B"
    assert after == [str(i) for i in range(1, len(after) + 1)], "nothing lost or doubled"
    assert len(after) > len(before) + 5, "the container keeps writing on B"
    sync = report["sync"]
    assert isinstance(sync, dict)
    assert sync["presync_bytes"] > 1 << 20  # busybox went over while it ran
    assert "final_sync_ms" in sync
    assert ("runc_after_commit_ms" in sync) is (mode == "cold")
    assert no_network_lock(runc_nodes.cluster.topology["a"])  # a lazy dump leaves one too
    print(f"{mode}: downtime {report['downtime_ms']:.0f} ms (runc after the commit "
          f"{sync.get('runc_after_commit_ms', 0):.0f} ms), final rsync "
          f"{sync['final_sync_ms']:.0f} ms, total {report['total_ms']:.0f} ms")


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_echo_container_keeps_its_tcp_client(runc_nodes: RuncNodes, service_address: str,
                                             mode: str) -> None:
    b = runc_nodes.start_b()
    cid = f"echo-{mode}"
    c = runc_nodes.run(cid, ECHO)
    runc_nodes.cluster.topology["a"].wait_listening(PORT)
    out = runc_nodes.cluster.base / "client.json"
    client = _client(runc_nodes.cluster, out, duration=12)
    time.sleep(1)
    res, report = runc_nodes.migrate(cid, b, "--mode", mode, "--tcp-established",
                                     "--move-address", f"{service_address}/24@eth0")
    assert res.returncode == 0, res.stderr + res.stdout
    assert c.state() is None
    assert client.poll() is None, "the client must still be talking after the migration"
    client.wait(60)
    result = client_kept_talking(out, 3000)
    address_moved(runc_nodes.cluster.topology, SERVICE)
    assert runc_nodes.on_b(cid).state() is not None
    assert no_network_lock(runc_nodes.cluster.topology["a"])
    print(f"{mode}: client-observed gap {result['max_gap_ms']:.0f} ms, ferryman downtime "
          f"{report['downtime_ms']:.0f} ms")


@pytest.mark.parametrize("mode", ["precopy", "hybrid"])
def test_precopy_without_dirty_tracking_is_refused_before_anything_freezes(
        runc_nodes: RuncNodes, mode: str) -> None:
    """This kernel has no soft-dirty: the source's mem_track check (the one process trees
    pass through too) refuses before the Plan; the container never stopped writing."""
    b = runc_nodes.start_b()
    cid = f"counter-{mode}-refused"
    c, on_a = runc_nodes.counter(cid, 5)
    res, report = runc_nodes.migrate(cid, b, "--mode", mode)
    assert res.returncode != 0
    assert one_error_line(res.stderr), res.stderr
    error = res.stderr.strip().splitlines()[-1]
    assert "soft-dirty" in error
    assert "--mode cold or postcopy" in error
    assert report["result"] == "failed"
    assert report["iterations"] == []
    lines = _lines(on_a)
    assert lines == [str(i) for i in range(1, len(lines) + 1)]
    time.sleep(0.3)
    assert len(_lines(on_a)) > len(lines) + 5, "it keeps running on A"
    state = c.state()
    assert state is not None
    assert state["status"] == "running"
    assert runc_nodes.on_b(cid).state() is None
    assert b.migration_dirs() == []


def test_address_on_destination_keeps_the_container_serving(runc_nodes: RuncNodes,
                                                            service_address: str) -> None:
    b = runc_nodes.start_b()
    c = runc_nodes.run("echo-refused", ECHO)
    runc_nodes.cluster.topology["a"].wait_listening(PORT)
    out = runc_nodes.cluster.base / "client.json"
    client = _client(runc_nodes.cluster, out, duration=3)
    time.sleep(0.5)
    runc_nodes.cluster.topology["b"].run("ip", "addr", "add", f"{SERVICE}/24", "dev", "eth0")
    res, _ = runc_nodes.migrate("echo-refused", b, "--tcp-established", "--move-address",
                                f"{service_address}/24@eth0")
    assert res.returncode != 0
    assert f"{SERVICE} is already present on b" in res.stderr
    assert one_error_line(res.stderr)
    state = c.state()
    assert state is not None
    assert state["status"] == "running"
    client.wait(30)
    result = json.loads(out.read_text())
    assert result["error"] is None
    assert result["bad"] == 0
    assert float(result["max_gap_ms"]) < 1000, "nothing was frozen"
    assert runc_nodes.on_b("echo-refused").state() is None


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_restore_failure_after_the_freeze_rolls_back(runc_nodes: RuncNodes, mode: str) -> None:
    """B's runc fails at restore (a wrapper): the frozen container resumes on A, keeps every
    write, and runc on A still manages it (no checkpoint mark left behind)."""
    fake = runc_nodes.cluster.base / "failing-runc"
    fake.write_text('#!/bin/sh\ncase " $* " in *" restore "*) exit 1 ;; esac\n'
                    'exec runc "$@"\n')
    fake.chmod(0o755)
    b = runc_nodes.cluster.start_agent("b", "--runc-root", str(runc_nodes.root_b), "--runc",
                                       str(fake), hide_dir=True, cgroup=runc_nodes.jail)
    cid = f"counter-rollback-{mode}"
    c, on_a = runc_nodes.counter(cid, 25)
    res, report = runc_nodes.migrate(cid, b, "--mode", mode)
    assert res.returncode == EXIT_ROLLED_BACK, res.stderr + res.stdout
    assert one_error_line(res.stderr)
    assert f"runc restore {cid}" in res.stderr
    assert report["result"] == "rolled_back"
    state = c.state()
    assert state is not None
    assert state["status"] == "running"
    assert not (runc_nodes.root_a / cid / "checkpoint").exists()
    assert no_network_lock(runc_nodes.cluster.topology["a"])  # post-copy: criu was killed
    before = len(_lines(on_a))
    time.sleep(0.5)
    after = _lines(on_a)
    assert len(after) > before + 5, "it runs on A again"
    assert after == [str(i) for i in range(1, len(after) + 1)], "nothing lost or doubled"
    assert runc_nodes.on_b(cid).state() is None
    assert not runc_nodes.bundle_on_b(cid).parent.exists(), "B keeps no synced files"


def test_rootfs_outside_the_bundle_lands_in_bs_own_rootfs_directory(
        runc_nodes: RuncNodes) -> None:
    """A's config.json names an absolute rootfs elsewhere: B syncs it into its slot's
    ``rootfs`` and points its copy of config.json there before the restore."""
    b = runc_nodes.start_b()
    cid = "counter-outside"
    bundle = make_bundle(runc_nodes.cluster.hidden_dir / cid, COUNTER,
                         runc_nodes.cluster.topology["a"])
    outside = runc_nodes.cluster.hidden_dir / f"{cid}-root"
    (bundle / "rootfs").rename(outside)
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["path"] = str(outside)
    (bundle / "config.json").write_text(json.dumps(config))
    c = run_container(runc_nodes.cluster.topology["a"], runc_nodes.root_a, bundle, cid)
    runc_nodes.containers.append(c)
    wait_for(lambda: len(_lines(outside / "data" / "log")) >= 10, what="the first writes")
    res, _ = runc_nodes.migrate(cid, b)
    assert res.returncode == 0, res.stderr + res.stdout
    state = runc_nodes.on_b(cid).state()
    assert state is not None
    assert state["status"] == "running"
    slot = runc_nodes.bundle_on_b(cid).parent
    assert state["rootfs"] == str(slot / "rootfs")
    frozen = _lines(outside / "data" / "log")
    time.sleep(0.5)
    after = _lines(slot / "rootfs" / "data" / "log")
    assert after[:len(frozen)] == frozen
    assert len(after) > len(frozen) + 5, "it keeps writing on B, into B's rootfs"


def test_rootfs_sync_failure_says_rsyncs_words_and_freezes_nothing(
        runc_nodes: RuncNodes) -> None:
    """B's copy of the bundle has no room (a 256 KiB tmpfs there): rsync's own message."""
    b = runc_nodes.start_b()
    c, on_a = runc_nodes.counter("counter-full", 5)
    there = runc_nodes.bundle_on_b("counter-full")
    runc_nodes.cluster.topology["b"].run(
        "nsenter", "-t", str(b.proc.pid), "-m", "sh", "-c",
        f"mkdir -p {there} && mount -t tmpfs -o size=256k tmpfs {there}")
    res, report = runc_nodes.migrate("counter-full", b)
    assert res.returncode == EXIT_SYNC, res.stderr + res.stdout
    assert one_error_line(res.stderr)
    assert f"syncing {c.bundle} failed: rsync" in res.stderr
    assert "No space left on device" in res.stderr
    assert report["result"] == "failed"  # nothing was frozen
    before = len(_lines(on_a))
    time.sleep(0.3)
    assert len(_lines(on_a)) > before + 5, "it kept running on A"
    state = c.state()
    assert state is not None
    assert state["status"] == "running"
    assert runc_nodes.on_b("counter-full").state() is None


def test_runc_missing_on_the_destination_refuses_the_plan(runc_nodes: RuncNodes) -> None:
    b = runc_nodes.cluster.start_agent("b", "--runc", "/nonexistent/runc", hide_dir=True)
    c = runc_nodes.run("counter-norunc", COUNTER)
    res, _ = runc_nodes.migrate("counter-norunc", b)
    assert res.returncode != 0
    assert one_error_line(res.stderr)
    assert "runc (/nonexistent/runc) is not installed on b" in res.stderr
    state = c.state()
    assert state is not None
    assert state["status"] == "running"


def test_source_killed_while_held_resumes_it_and_the_destination_keeps_it_stopped(
        runc_nodes: RuncNodes) -> None:
    """SIGKILL to 'ferryman migrate' at RESTORED: its lock dies with it, the hold script gets
    no "go", CRIU resumes the container on A; B keeps its copy stopped (an orphan)."""
    b = runc_nodes.cluster.start_agent("b", "--runc-root", str(runc_nodes.root_b),
                                       "--test-pause-after-restore", "5", hide_dir=True,
                                       cgroup=runc_nodes.jail)
    c, on_a = runc_nodes.counter("counter-killed", 5)
    argv = runc_nodes.cluster.topology["a"].argv(
        PY, "-m", "ferryman", "migrate", "--runc", "counter-killed", "--runc-root",
        str(runc_nodes.root_a), "--to", b.endpoint, "--pki", str(runc_nodes.cluster.pki),
        "--name", "a", "--state-dir", str(runc_nodes.cluster.base / "src"))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: "restored migration" in b.log(), timeout=60, what="the restore on B")
    frozen_at = len(_lines(on_a))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    wait_for(lambda: len(_lines(on_a)) > frozen_at + 5, what="the container running on A")
    lines = _lines(on_a)
    assert lines == [str(i) for i in range(1, len(lines) + 1)], "nothing lost or doubled"
    state = c.state()
    assert state is not None
    assert state["status"] == "running"
    wait_for(lambda: any("ORPHANED" in o for o in b.outcomes().values()),
             timeout=20, what="the orphan record on B")
    orphan = runc_nodes.on_b("counter-killed")
    assert (runc_nodes.bundle_on_b("counter-killed").parent / "restored").exists()
    assert Path(f"/proc/{orphan.pid}/stat").read_text().split(") ")[1][0] == "T"
    time.sleep(0.5)
    assert Path(f"/proc/{orphan.pid}/stat").read_text().split(") ")[1][0] == "T", \
        "an orphan must never resume by itself"


def test_runc_missing_on_the_source_is_one_line_error(runc_nodes: RuncNodes) -> None:
    b = runc_nodes.start_b()
    argv = runc_nodes.cluster.topology["a"].argv(
        "env", "PATH=/nonexistent", PY, "-m", "ferryman", "migrate", "--runc", "any", "--to",
        b.endpoint, "--pki", str(runc_nodes.cluster.pki), "--name", "a", "--state-dir",
        str(runc_nodes.cluster.base / "src"))
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == EXIT_RUNC, res.stderr
    assert one_error_line(res.stderr)
    assert "runc (runc) is not installed on this node" in res.stderr


def test_unknown_container_is_one_line_error(runc_nodes: RuncNodes) -> None:
    b = runc_nodes.start_b()
    res, report = runc_nodes.migrate("no-such-box", b)
    assert res.returncode == EXIT_NO_SUCH, res.stderr
    assert one_error_line(res.stderr)
    assert "no runc container with id 'no-such-box'" in res.stderr
    assert report.get("result") == "failed"


def test_check_runc_says_what_it_can(runc_nodes: RuncNodes) -> None:
    b = runc_nodes.start_b()
    runc_nodes.run("checked", COUNTER)

    def check(cid: str) -> subprocess.CompletedProcess[str]:
        return run_cli("check", "--runc", cid, "--runc-root", str(runc_nodes.root_a), "--to",
                       b.endpoint, "--pki", str(runc_nodes.cluster.pki), "--name", "a",
                       "--state-dir", str(runc_nodes.cluster.base / "s"), "--json",
                       node=runc_nodes.cluster.topology["a"])

    res = check("checked")
    assert res.returncode == 0, res.stderr + res.stdout
    verdict = json.loads(res.stdout)
    rows = {(r["side"], r["check"]): r["status"] for r in verdict["rows"]}
    for side in ("source", "destination"):
        assert rows[(side, "runc")] == "pass"
        assert rows[(side, "rsync")] == "pass"
    assert rows[("source", "container")] == "pass"
    assert rows[("source", "kernel.dirty-tracking")] == "fail"  # this kernel: no soft-dirty
    assert set(verdict["supported_modes"]) == {"cold", "postcopy", "precopy", "hybrid"}
    assert set(verdict["allowed_modes"]) == {"cold", "postcopy"}
    res = check("not-there")
    assert res.returncode == EXIT_PREFLIGHT
    assert one_error_line(res.stderr)
    rows = {r["check"]: r for r in json.loads(res.stdout)["rows"]}
    assert rows["container"]["status"] == "fail"
    assert "no runc container with id 'not-there'" in rows["container"]["detail"]


LOCKER_C = Path(__file__).resolve().parents[1] / "support" / "locker.c"


def static_locker(into: Path) -> None:
    """tests/support/locker.c, built static into a rootfs (busybox has no flock applet)."""
    res = subprocess.run(["gcc", "-static", "-O2", "-o", str(into), str(LOCKER_C)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"gcc -static (gcc, libc6-dev: 'make setup'): {res.stderr}"


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_a_container_holding_file_locks_moves_with_them(runc_nodes: RuncNodes,
                                                        mode: str) -> None:
    """runc checkpoint/restore get --file-locks when the container holds locks: its flock
    and POSIX lock are held again by its init on B, which keeps counting."""
    b = runc_nodes.start_b()
    cid = f"locker-{mode}"
    args = ["/bin/locker", "/data/app.pid", "/data/app.db", "/data/log"]
    node = runc_nodes.cluster.topology["a"]
    bundle = make_bundle(runc_nodes.cluster.hidden_dir / cid, args, node)
    (bundle / "rootfs" / "data").mkdir(exist_ok=True)
    static_locker(bundle / "rootfs" / "bin" / "locker")
    c = run_container(node, runc_nodes.root_a, bundle, cid)
    runc_nodes.containers.append(c)
    on_a = c.bundle / "rootfs" / "data" / "log"
    wait_for(lambda: len(_lines(on_a)) >= 5, what="the container's first writes")
    init = c.pid
    assert {("FLOCK", init), ("POSIX", init)} <= _lock_holders()
    res, report = runc_nodes.migrate(cid, b, "--mode", mode)
    assert res.returncode == 0, res.stderr + res.stdout
    assert report["result"] == "committed"
    moved = runc_nodes.on_b(cid)
    assert {("FLOCK", moved.pid), ("POSIX", moved.pid)} <= _lock_holders()
    on_b = Path(f"/proc/{moved.pid}/root/data/log")
    before = len(_lines(on_b))
    time.sleep(0.3)
    assert len(_lines(on_b)) > before, "it keeps running on B"


def _lock_holders() -> set[tuple[str, int]]:
    return {(lock.kind, lock.pid) for lock in read_locks()}
