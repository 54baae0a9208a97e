"""Pre-copy and hybrid on this host's kernel, which has no soft-dirty (issue 15).

The source tracks dirty pages with userfaultfd async write-protect (ferryman.host.wptrack and
CRIU's --track-mem-uffd); namespace nodes, real agents, real criu, memory verified page by
page on the destination.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ferryman import testhooks
from ferryman.criu.rpc import HAS_TRACK_MEM_UFFD
from ferryman.host import uffd, wptrack
from tests.integration.conftest import PY, Cluster, Report
from tests.support.workloads import Workload, alive, children, ns_pid

pytestmark = pytest.mark.skipif(
    not (wptrack.kernel_supports() and HAS_TRACK_MEM_UFFD),
    reason="needs userfaultfd async write-protect and criu with the uffd-track-mem patch")


def pages(report: Report, i: int) -> int:
    its = report["iterations"]
    assert isinstance(its, list)
    return int(its[i]["pages_written"])


def _moved(cluster: Cluster, w: Workload, mode: str, *extra: str) -> tuple[int, Report]:
    b = cluster.start_agent("b")
    before = w.status()
    assert before["bad_pages"] == 0
    res, report = cluster.migrate(w.pid, b, "--mode", mode, *extra)
    assert res.returncode == 0, res.stderr
    assert report["result"] == "committed"
    assert report["dirty_tracker"] == "uffd-wp"
    new_pid = report["destination_pid"]
    assert isinstance(new_pid, int)
    try:
        assert not alive(w.pid)
        after = w.status(new_pid)
        assert after["bad_pages"] == 0  # every page, verified against the bookkeeping
        assert int(after["writes"]) > int(before["writes"])  # type: ignore[call-overload]
    except BaseException:
        w.kill(new_pid)  # the caller never learns the restored PID
        raise
    return new_pid, report


@pytest.mark.parametrize("mode", ["precopy", "hybrid"])
def test_a_writing_workload_moves_with_its_writes_tracked_by_uffd_wp(
        cluster: Cluster, mode: str) -> None:
    w = cluster.workload(mib=256, seed=f"uffd-{mode}", dirty_rate=500)
    new_pid = None
    try:
        new_pid, report = _moved(cluster, w, mode, "--policy", "lxd", "--max-iterations", "3")
        its = report["iterations"]
        assert isinstance(its, list)
        assert len(its) >= 2
        assert pages(report, 0) >= 256 * 256  # the first pre-dump sends everything
        # then only what was written since: 500 pages/s, and the interpreter's own writes
        assert pages(report, 1) < pages(report, 0) // 10, its
        assert report["mode"] == mode
        comp = report["compression"]
        assert isinstance(comp, dict)
        # hybrid's lazy final step goes through ferryman's page relay, a pre-copy's final
        # dump into CRIU's page server
        assert comp["relay"] is (mode == "hybrid"), comp
        if mode == "hybrid":
            assert comp["on"] is False  # pre-copying modes are not compressed
            assert comp["raw_bytes"] > 0
        print(f"{mode}: pages per pre-dump {[int(i['pages_written']) for i in its]}, "
              f"downtime {report['downtime_ms']} ms")
    finally:
        w.kill(new_pid)


@pytest.mark.parametrize("memory", ["thp", "shared", "memfd"])
def test_huge_pages_and_shared_memory_arrive_intact(cluster: Cluster, memory: str) -> None:
    """THP (a write unprotects a whole 2 MiB huge page: sent again whole), shared anonymous
    memory and a memfd (CRIU dumps shared memory whole every time; still registered and
    protected per process): every page verified."""
    w = cluster.workload(mib=64, seed=f"uffd-{memory}", dirty_rate=200, memory=memory)
    new_pid = None
    try:
        new_pid, report = _moved(cluster, w, "precopy", "--policy", "lxd",
                                 "--max-iterations", "3")
        print(f"{memory}: pages per pre-dump "
              f"{[int(i['pages_written']) for i in report['iterations']]}, "  # type: ignore[attr-defined]
              f"final {report['final_pages']}")
    finally:
        w.kill(new_pid)


def test_mappings_created_and_unmapped_between_iterations_arrive_intact(
        cluster: Cluster) -> None:
    """--churn: a 1 MiB mapping replaced every 100 ms, often at a freed address, each living
    3.2 s, across pre-dumps and the final dump: pages of a mapping that appeared after the
    tracker last registered are sent whole, and a dropped one's pages never come back."""
    w = cluster.workload(mib=64, seed="uffd-churn", dirty_rate=200, churn=32)
    new_pid = None
    try:
        new_pid, report = _moved(cluster, w, "precopy", "--policy", "lxd",
                                 "--max-iterations", "4")
        st = w.status(new_pid)
        assert int(st["churned"]) > 0  # type: ignore[call-overload]
        assert len(report["iterations"]) >= 2  # type: ignore[arg-type]
    finally:
        w.kill(new_pid)


def test_every_process_of_a_tree_gets_its_own_tracker(cluster: Cluster) -> None:
    """Each forked child has its own address space, so its own userfaultfd."""
    w = cluster.workload(mib=64, seed="uffd-tree", dirty_rate=200, children_=2)
    new_pid = None
    try:
        deadline = time.monotonic() + 30
        while len(children(w.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(children(w.pid)) == 2
        new_pid, report = _moved(cluster, w, "precopy", "--policy", "lxd",
                                 "--max-iterations", "3")
        assert pages(report, 1) < pages(report, 0) // 4, report["iterations"]
        kids = sorted(children(new_pid))
        by_role = {ns_pid(k) - 1: k for k in kids}
        assert sorted(by_role) == [1, 2]
        for i, kid in by_role.items():
            st = w.status(kid, path=Path(f"{w.status_path}.child{i}"))
            assert st["bad_pages"] == 0
    finally:
        w.kill(new_pid)


def _written(pid: int) -> int:
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        return uffd.count_pages(uffd.scan(
            fd, 0, wptrack.TASK_END, category_mask=uffd.PAGE_IS_WRITTEN | uffd.PAGE_IS_PRESENT,
            return_mask=uffd.PAGE_IS_WRITTEN))
    finally:
        os.close(fd)


def test_the_controller_dying_with_the_trackers_leaves_the_workload_untouched(
        cluster: Cluster) -> None:
    """``ferryman migrate`` holds the userfaultfds; killed after its pre-dumps, just before
    the final freeze: the kernel unprotects every page, the workload writes on."""
    b = cluster.start_agent("b")
    w = cluster.workload(mib=64, seed="uffd-killed", dirty_rate=200)
    flag = cluster.base / "pause-src"
    argv = [PY, "-m", "ferryman", "migrate", str(w.pid), "--to", b.endpoint, "--mode",
            "precopy", "--policy", "lxd", "--max-iterations", "2", "--pki", str(cluster.pki),
            "--name", "a", "--state-dir", str(cluster.base / "state-src")]
    proc = cluster.topology["a"].popen(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, testhooks.ENV: f"FREEZING:{flag}"})
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert proc.poll() is None, "the migration ended before its final freeze"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not wptrack.holds_userfaultfd(w.pid)
        tracked = _written(w.pid)
        assert tracked < 64 * 256 // 4, tracked  # protected by the pre-dumps: few written
        before = w.status()
        proc.kill()
        proc.wait(10)
        time.sleep(0.2)
        assert _written(w.pid) >= 64 * 256  # nothing protected any more
        after = w.status()
        assert after["bad_pages"] == 0
        assert int(after["writes"]) > int(before["writes"])  # type: ignore[call-overload]
        assert float(after["max_gap_ms"]) < 1000  # type: ignore[arg-type]
        assert alive(w.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        w.kill()
