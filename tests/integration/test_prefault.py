"""``serve --prefault``: the destination makes the memory of the frozen window resident
before the freeze, and gives it back as the pages and the restore take it.

Real agents, the real criu. ``on`` forces what ``auto`` does on a node whose balloon
reports free pages to its hypervisor (host/prefault.py), whatever this host is."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import PY, Cluster

MIB = 1 << 20


def anon_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"PID {pid} has no RssAnon")


def test_cold_destination_makes_twice_the_rss_resident_then_gives_it_back(
        cluster: Cluster) -> None:
    b = cluster.start_agent("b", "--prefault", "on", "--test-pause-after-restore", "1.5")
    w = cluster.workload(mib=128, seed="prefault-cold")
    report_path = cluster.base / "prefault-report.json"
    new_pid = None
    try:
        proc = subprocess.Popen(cluster.topology["a"].argv(
            PY, "-m", "ferryman", "migrate", str(w.pid), "--to", b.endpoint, "--pki",
            str(cluster.pki), "--name", "a", "--state-dir", str(cluster.base / "src-prefault"),
            "--report", str(report_path), "--cold-restore", "images"),  # page files: 2x RSS
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while "restored migration" not in b.log():
            assert time.monotonic() < deadline, b.log()
            assert proc.poll() is None, b.log()
            time.sleep(0.01)
        held_at_restored = anon_rss(b.proc.pid)  # the tree is restored, not yet resumed
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        report = json.loads(report_path.read_text())
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert w.status(new_pid)["bad_pages"] == 0
        rss, made = report["rss_bytes"], report["prefault_bytes"]
        assert isinstance(rss, int)
        assert isinstance(made, int)
        # the pages' page cache and the tree's memory, in whole chunks
        assert 2 * rss <= made <= 2 * rss + 64 * MIB, (rss, made)
        assert report["steps"]["prefault"] > 0  # type: ignore[index]
        assert "resident for the restore" in out
        assert "made resident before the freeze" in b.log()
        # given back before the restore took its memory: B's agent held none of it then
        assert held_at_restored < made // 2, (held_at_restored, made)
    finally:
        w.kill(new_pid)


def test_pre_copy_takes_only_the_restore_s_share_and_post_copy_none(cluster: Cluster) -> None:
    b = cluster.start_agent("b", "--prefault", "on")
    w = cluster.workload(mib=64, seed="prefault-modes")
    pids: list[int] = []
    try:
        moved, report = cluster.moved_with_report(w, b, "--mode", "precopy")
        pids.append(moved)
        rss, made = report["rss_bytes"], report["prefault_bytes"]
        assert isinstance(rss, int)
        assert isinstance(made, int)
        assert rss <= made <= rss + 64 * MIB, (rss, made)
        back = cluster.start_agent("a", "--prefault", "on")
        res, report = cluster.migrate(moved, back, "--mode", "postcopy", name="b")
        assert res.returncode == 0, res.stderr
        assert isinstance(report["destination_pid"], int)
        pids.append(report["destination_pid"])
        assert w.status(report["destination_pid"])["bad_pages"] == 0
        assert report["prefault_bytes"] == 0
    finally:
        for pid in pids:
            w.kill(pid)
