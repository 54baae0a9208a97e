"""A workload that writes files both nodes see moves by default (issue 14, item 1).

The two namespace nodes share one filesystem, as nodes with shared storage do: a log the
workload appends to, and a heartbeat file it rewrites in place, change between the source's
and the destination's ``stat``. That is the workload's own running, not a difference between
the nodes: neither ``check`` nor ``migrate`` may refuse it, and no ``--force`` is needed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.conftest import Cluster
from tests.integration.test_check import check, check_roots, fails, rows


def beats(log: Path) -> list[tuple[int, int]]:
    """(beat, pid) of every complete line of the log."""
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "beat" and parts[2] == "pid":
            out.append((int(parts[1]), int(parts[3])))
    return out


@pytest.mark.parametrize("mode", ["cold", "postcopy", "precopy", "hybrid"])
def test_workload_writing_shared_files_moves_without_force(cluster: Cluster, mode: str) -> None:
    """A log appender and an in-place heartbeat on storage both nodes see, in every mode
    (pre-copy and hybrid with the uffd-wp tracker on this kernel: the file keeps changing
    while the pre-dumps run, and the final dump's size check holds)."""
    b = cluster.start_agent("b", *check_roots(cluster))  # pytest's tmp_path is private
    log, hb = cluster.base / "access.log", cluster.base / "hb"
    w = cluster.workload(mib=16, seed=f"written-{mode}", log_file=str(log),
                         write_file=str(hb))
    new_pid: int | None = None
    try:
        res, v = check(cluster, w.pid, b)
        assert res.returncode == 0, res.stderr
        assert fails(v) == {}
        assert "files.mtime" not in rows(v, "warn"), rows(v, "warn")
        assert "the same file on both (shared storage)" in str(rows(v, "pass")["files"]["detail"])
        new_pid = cluster.moved(w, b, "--mode", mode)
        before = len(beats(log))
        time.sleep(0.5)
        lines = beats(log)
        assert len(lines) > before + 50, "the restored workload keeps appending to its log"
        numbers = [n for n, _ in lines]
        assert numbers == list(range(1, len(numbers) + 1)), "no beat lost or written twice"
        assert int(hb.read_text()) >= numbers[-1] - 5
    finally:
        w.kill(new_pid)
