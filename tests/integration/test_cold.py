"""Cold migration between two namespace nodes, with real agents and the real criu."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Cluster
from tests.support.workloads import alive, children, ns_pid, start_time

EXIT_ROLLED_BACK = 8
EXIT_PEER = 5
# the page files' way (a process tree's cold restore is streamed by default: test_streamed.py)
IMAGES = ("--cold-restore", "images")


def one_error_line(stderr: str) -> bool:
    """The error is exactly one line, and the last one (progress lines may come before)."""
    lines = stderr.strip().splitlines()
    return sum(ln.startswith("ferryman: error:") for ln in lines) == 1 and \
        lines[-1].startswith("ferryman: error:")


def criu_children(pid: int) -> list[int]:
    """criu processes below ``pid`` (an agent's page servers, swrk sessions)."""
    out = []
    todo = [pid]
    while todo:
        for c in children(todo.pop()):
            todo.append(c)
            try:
                if Path(f"/proc/{c}/comm").read_text().strip() == "criu":
                    out.append(c)
            except FileNotFoundError:
                pass
    return out


def test_cold_migration_moves_256mib_with_memory_intact(cluster: Cluster) -> None:
    cluster.start_agent("a")
    b = cluster.start_agent("b", hide_dir=True)
    w = cluster.workload(mib=256, seed="cold-256")
    new_pid = None
    try:
        res, report = cluster.migrate(w.pid, b, *IMAGES)
        assert res.returncode == 0, res.stderr + res.stdout
        assert report["result"] == "committed"
        assert report["mode"] == "cold"
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert not alive(w.pid), "the workload must be gone from the source"
        assert alive(new_pid)
        w.runs_intact(new_pid, mib=256)  # every page, and it keeps running on B
        # The report carries what a user needs.
        for key in ("downtime_ms", "total_ms", "bytes_transferred", "source_pid", "criu"):
            assert key in report
        assert report["bytes_transferred"] >= 256 << 20  # type: ignore[operator]
        assert "frozen_time" in report["criu"]["dump"]  # type: ignore[index]
        assert "restore_time" in report["criu"]["restore"]  # type: ignore[index]
        assert "COMMITTED" in res.stdout
        # B keeps only logs of a committed migration, no images, and its outcome apart.
        (mig,) = b.migration_dirs()
        assert {p.name for p in mig.iterdir() if not p.name.endswith(".log")} == set()
        assert b.outcomes()[mig.name] == f"DONE {new_pid}\n"
    finally:
        w.kill(new_pid)


def test_restore_failure_on_destination_rolls_back(cluster: Cluster) -> None:
    b = cluster.start_agent("b", hide_dir=True)
    held = cluster.hidden_dir / "data.txt"
    held.write_text("only on node A\n")
    w = cluster.workload(mib=64, seed="rollback", hold_file=str(held))
    ident = start_time(w.pid)
    try:
        # The pre-flight check would refuse this (the file is missing on B); skip it to
        # exercise the rollback of a restore that really fails.
        res, report = cluster.migrate(w.pid, b, "--test-skip-preflight")
        assert res.returncode == EXIT_ROLLED_BACK, res.stderr
        assert "rolled back" in res.stderr
        assert "workload still runs on the source" in res.stderr
        assert one_error_line(res.stderr)
        assert report["result"] == "rolled_back"
        assert alive(w.pid)
        assert start_time(w.pid) == ident
        st = w.status()
        assert st["bad_pages"] == 0
        assert b.migration_dirs() == []
        assert criu_children(b.proc.pid) == []
        assert report["destination_log_tail"], "B's restore log excerpt is kept in the report"
    finally:
        w.kill()


def test_destination_killed_mid_transfer_rolls_back(cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=512, seed="kill-b")
    killed = threading.Event()

    def kill_b_when_pages_flow() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for d in b.migration_dirs():
                pages = list(d.glob("pages-*.img"))
                if pages and pages[0].stat().st_size > 16 << 20:
                    b.kill()
                    killed.set()
                    return
            time.sleep(0.002)

    t = threading.Thread(target=kill_b_when_pages_flow, daemon=True)
    t.start()
    try:
        res, report = cluster.migrate(w.pid, b, *IMAGES)
        t.join(5)
        assert killed.is_set(), "the agent was not killed during the transfer"
        assert res.returncode in (EXIT_ROLLED_BACK,), res.stderr
        assert report["result"] == "rolled_back"
        assert alive(w.pid)
        assert w.status()["bad_pages"] == 0
        # Nothing of the agent remains running; a restarted agent removes the partial images.
        time.sleep(0.2)
        assert subprocess.run(["pgrep", "-f", str(b.state_dir)], check=False,
                              capture_output=True).stdout == b""
        b2 = cluster.start_agent("b")
        assert b2.migration_dirs() == []
        assert "removed the images of interrupted migration" in b2.log()
    finally:
        w.kill()


def test_client_with_foreign_certificate_is_refused_and_nothing_frozen(
        cluster: Cluster, rogue_pki: Path) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=16, seed="rogue")
    try:
        w.reset_gap()
        res, _ = cluster.migrate(w.pid, b, pki=rogue_pki)
        assert res.returncode == EXIT_PEER, res.stderr
        assert "certificate" in res.stderr.lower() or "tls" in res.stderr.lower()
        assert one_error_line(res.stderr)
        st = w.status()
        assert st["bad_pages"] == 0
        assert float(st["max_gap_ms"]) < 100, "the workload must never have been frozen"  # type: ignore[arg-type]
        assert b.migration_dirs() == []
    finally:
        w.kill()


def test_unknown_pid_is_a_one_line_error(cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    res, _ = cluster.migrate(4_000_000, b)
    assert res.returncode == 3
    assert res.stderr.strip() == ("ferryman: error: no process with PID 4000000: check the PID "
                                  "with 'ps -p PID' on the source node")


def test_unreachable_destination_is_a_one_line_error(cluster: Cluster) -> None:
    cluster.start_agent("b")
    w = cluster.workload(mib=16, seed="unreach")
    try:
        res = subprocess.run(
            cluster.topology["a"].argv(
                sys.executable, "-m", "ferryman", "migrate",
                str(w.pid), "--to", f"{cluster.topology['c'].ip}:7070", "--pki",
                str(cluster.pki), "--name", "a", "--state-dir", str(cluster.base / "s")),
            capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == EXIT_PEER
        assert "cannot reach the agent" in res.stderr
        assert alive(w.pid)
    finally:
        w.kill()


def test_process_tree_with_pipe_migrates_whole(cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=64, seed="tree", children_=3)
    new_pid = None
    try:
        deadline = time.monotonic() + 30
        while len(children(w.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        old_kids = children(w.pid)
        assert len(old_kids) == 3
        time.sleep(0.5)  # let the pipe carry some numbers
        res, report = cluster.migrate(w.pid, b)
        assert res.returncode == 0, res.stderr
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        kids = sorted(children(new_pid))
        assert len(kids) == 3
        assert not any(alive(p) for p in [w.pid, *old_kids])
        assert w.status(new_pid)["bad_pages"] == 0
        # Children were forked in order: child i is PID i+1 in the workload's namespace,
        # and CRIU restores the namespace PIDs exactly.
        by_role = {ns_pid(k) - 1: k for k in kids}
        assert sorted(by_role) == [1, 2, 3]
        for i, kid in by_role.items():
            st = w.status(kid, path=Path(f"{w.status_path}.child{i}"))
            assert st["bad_pages"] == 0
        reader = w.status(by_role[2], path=Path(f"{w.status_path}.child2"))
        assert reader["pipe_bad"] == 0
        assert int(reader["received"]) > 0  # type: ignore[call-overload]
        time.sleep(0.2)
        again = w.status(by_role[2], path=Path(f"{w.status_path}.child2"))
        assert int(again["received"]) > int(reader["received"])  # type: ignore[call-overload]
    finally:
        w.kill(new_pid)


@pytest.mark.parametrize("mib", [1024])
def test_cold_migration_of_1gib(cluster: Cluster, mib: int) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=mib, seed="cold-1g")
    new_pid = None
    try:
        new_pid = cluster.moved(w, b)  # every page verified there
    finally:
        w.kill(new_pid)


def test_undumpable_process_gives_criu_reason_and_keeps_running(cluster: Cluster) -> None:
    """A process holding a UNIX socket connected outside its tree cannot be dumped."""
    b = cluster.start_agent("b")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    node = cluster.topology["a"]
    proc = node.popen("unshare", "-p", "-f", "setsid", "sleep", "600",
                      stdin=theirs.fileno(), stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    theirs.close()
    try:
        deadline = time.monotonic() + 10
        while not children(proc.pid):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        pid = children(proc.pid)[0]
        res, report = cluster.migrate(pid, b, "--test-skip-preflight")  # dry run catches it
        assert res.returncode == EXIT_ROLLED_BACK, res.stderr
        assert one_error_line(res.stderr)
        assert "criu dump failed" in res.stderr
        assert "unix" in res.stderr.lower()  # CRIU's own reason, from its log
        assert "dump.log" in res.stderr
        assert report["result"] == "rolled_back"
        assert alive(pid)
        assert b.migration_dirs() == []
    finally:
        ours.close()
        proc.kill()
        for p in children(proc.pid):
            subprocess.run(["kill", "-9", str(p)], check=False)
        proc.wait(5)


def test_missing_criu_is_a_one_line_error_and_nothing_is_frozen(cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=16, seed="nocriu")
    try:
        w.reset_gap()
        res, _ = cluster.migrate(w.pid, b, "--criu", "/nonexistent/criu")
        assert res.returncode == 4, res.stderr
        assert one_error_line(res.stderr)
        assert "install CRIU >= 4.2 with 'sudo scripts/install-criu.sh'" in res.stderr
        st = w.status()
        assert float(st["max_gap_ms"]) < 100  # type: ignore[arg-type]
    finally:
        w.kill()


def test_agent_without_criu_refuses_to_start(cluster: Cluster) -> None:
    node = cluster.topology["b"]
    res = subprocess.run(
        node.argv(sys.executable, "-m", "ferryman", "serve", "--listen", f"{node.ip}:7071",
                  "--pki", str(cluster.pki), "--name", "b", "--state-dir",
                  str(cluster.base / "s"), "--criu", "/nonexistent/criu"),
        capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 4
    assert res.stderr.strip().splitlines()[-1].startswith("ferryman: error: criu start failed")
