"""The source dies after the destination restored but before the commit: never twice."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.conftest import Cluster, run_cli
from tests.support.workloads import alive


def state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def test_source_lost_at_restored_keeps_destination_stopped_for_the_operator(
        cluster: Cluster) -> None:
    b = cluster.start_agent("b", "--test-pause-after-restore", "5")
    w = cluster.workload(mib=64, seed="orphan")
    orphan_pid = None
    try:
        # the controller and its criu; --tcp-established: CRIU locks the network (a dump
        # that has nothing to lock takes no lock: host/netlock.py:needed)
        tables = cluster.kill_controller_at_restored(w, b, "--tcp-established")
        assert "table inet CRIU-" in tables, "CRIU took no network lock to leave behind"
        # The source copy continues where it was (criu died, so its tasks were let go).
        deadline = time.monotonic() + 10
        while state(w.pid) != "S" and state(w.pid) != "R":
            assert time.monotonic() < deadline, state(w.pid)
            time.sleep(0.05)
        assert w.status()["bad_pages"] == 0
        # The killed controller's criu could not unlock the network; the guard the controller
        # started (agent/lockguard.py) removes CRIU's table from A.
        deadline = time.monotonic() + 10
        while "table inet CRIU-" in cluster.topology["a"].run("nft", "list", "tables").stdout:
            assert time.monotonic() < deadline, "CRIU's lock table stayed on the source"
            time.sleep(0.05)
        # The destination keeps its copy STOPPED and says so (its record says ORPHANED from
        # the restore on, so that an agent killed meanwhile still lists the copy).
        deadline = time.monotonic() + 20
        while "ORPHANED" not in "".join(b.outcomes().values()) or \
                "source lost after restore" not in b.log():
            assert time.monotonic() < deadline, b.log()
            time.sleep(0.1)
        listing = run_cli("orphans", "--state-dir", str(b.state_dir))
        assert listing.returncode == 0, listing.stderr
        mig_id, _, pid_text, stopped = listing.stdout.split()
        orphan_pid = int(pid_text)
        assert stopped == "STOPPED"
        assert state(orphan_pid) == "T"
        time.sleep(0.5)
        assert state(orphan_pid) == "T", "an orphan must never resume by itself"
        # The operator sees the source copy running and kills the orphan.
        killed = run_cli("orphans", "kill", mig_id, "--state-dir", str(b.state_dir))
        assert killed.returncode == 0, killed.stderr
        assert not alive(orphan_pid)
        assert alive(w.pid)
        assert "source lost after restore" in b.log()
    finally:
        w.kill(orphan_pid)
        # Should the guard have failed: later tests check that their own migrations leave no
        # lock table on A, so this one takes its leftover away.
        a = cluster.topology["a"]
        for line in a.run("nft", "list", "tables").stdout.splitlines():
            if line.startswith("table inet CRIU-"):
                a.run("nft", "delete", "table", "inet", line.split()[-1])
