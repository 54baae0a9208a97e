"""A FIFO holding unread data, migrated between namespace nodes (issue 14, item 2).

The nodes share one kernel and one filesystem, so the FIFO at the workload's path is one pipe
on both: the source, frozen at CRIU's post-dump while B restores, still holds it with its data.
B must not write that data into it a second time (a full FIFO failed the restore with EAGAIN;
a fuller one than half doubled its data), and a rollback must leave the source's FIFO as it was.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.integration.conftest import Cluster, run_cli
from tests.support.workloads import Workload, alive, start_fifo_workload

KIB = 1024
MIB = 1024 * KIB


def fifo_workload(cluster: Cluster, fill: int, pipe_size: int = 0, *, split: bool = False
                  ) -> Workload:
    return start_fifo_workload(cluster.topology["a"], cluster.base / "status.json",
                               cluster.base / "queue.fifo", fill=fill, pipe_size=pipe_size,
                               split=split)


def beats(w: Workload, pid: int) -> int:
    return int(w.status(pid)["beats"])  # type: ignore[call-overload]


@pytest.mark.parametrize(("mode", "fill", "pipe_size", "split"), [
    ("cold", 64 * KIB, 0, False),  # the case: a full 16-slot FIFO, opened O_RDWR
    ("postcopy", 64 * KIB, 0, False),
    ("cold", 4 * KIB, 0, False),  # room for a second copy: it was doubled, silently
    ("postcopy", 1 * MIB, 1 * MIB, False),  # F_SETPIPE_SZ, full
    ("cold", 64 * KIB, 0, True),  # a writer child and a reading root
])
def test_fifo_with_unread_data_arrives_exactly_once(cluster: Cluster, mode: str, fill: int,
                                                    pipe_size: int, split: bool) -> None:
    b = cluster.start_agent("b")
    w = fifo_workload(cluster, fill, pipe_size, split=split)
    new_pid = None
    try:
        res, report = cluster.migrate(w.pid, b, "--mode", mode)
        assert res.returncode == 0, res.stderr + res.stdout
        assert report["result"] == "committed"
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert not alive(w.pid), "the workload must be gone from the source"
        st = w.status(new_pid)
        assert st["fifo_bytes"] == fill, "the FIFO must hold exactly what was written"
        assert st["fifo_intact"] is True
        before = int(st["beats"])  # type: ignore[call-overload]
        time.sleep(0.2)
        assert beats(w, new_pid) > before, "the workload runs on B"
    finally:
        w.kill(new_pid)


def test_rollback_after_the_restore_leaves_the_sources_fifo_as_it_was(
        cluster: Cluster) -> None:
    """The controller dies at RESTORED: the source resumes, B keeps a stopped orphan; once the
    orphan is gone the source reads exactly its own data (B's restore added none)."""
    b = cluster.start_agent("b", "--test-pause-after-restore", "5")
    w = fifo_workload(cluster, 4 * KIB)
    orphan_pid = None
    try:
        cluster.kill_controller_at_restored(w, b)  # the controller and its criu
        deadline = time.monotonic() + 20
        while "ORPHANED" not in "".join(b.outcomes().values()):
            assert time.monotonic() < deadline, b.log()
            time.sleep(0.1)
        listing = run_cli("orphans", "--state-dir", str(b.state_dir))
        mig_id, _, pid_text, _ = listing.stdout.split()
        orphan_pid = int(pid_text)
        killed = run_cli("orphans", "kill", mig_id, "--state-dir", str(b.state_dir))
        assert killed.returncode == 0, killed.stderr
        st = w.status()
        assert st["fifo_bytes"] == 4 * KIB
        assert st["fifo_intact"] is True
    finally:
        w.kill(orphan_pid)
        a = cluster.topology["a"]  # as in test_orphans: never leave CRIU's lock table behind
        for line in a.run("nft", "list", "tables").stdout.splitlines():
            if line.startswith("table inet CRIU-"):
                a.run("nft", "delete", "table", "inet", line.split()[-1])


def test_fifo_that_is_another_pipe_on_the_destination_gets_its_data(cluster: Cluster) -> None:
    """B sees another FIFO at the path (its own mount of the directory): a different pipe,
    as on a second machine, so the data is restored into it."""
    b = cluster.start_agent("b", hide_dir=True)
    fifo = cluster.hidden_dir / "queue.fifo"
    w = start_fifo_workload(cluster.topology["a"], cluster.base / "status.json", fifo,
                            fill=64 * KIB)
    new_pid = None
    try:
        made = subprocess.run(["nsenter", "-m", "-t", str(b.proc.pid), "mkfifo", "-m", "600",
                               str(fifo)], capture_output=True, text=True, check=False)
        assert made.returncode == 0, made.stderr
        res, report = cluster.migrate(w.pid, b)
        assert res.returncode == 0, res.stderr + res.stdout
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        st = w.status(new_pid)
        assert st["fifo_bytes"] == 64 * KIB
        assert st["fifo_intact"] is True
    finally:
        w.kill(new_pid)

