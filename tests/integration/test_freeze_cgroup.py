"""A workload in a freezer cgroup of its own: we freeze it ourselves, not CRIU's 100 ms poll."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Cluster


def _freezer_root() -> tuple[Path, bool]:
    v1 = Path("/sys/fs/cgroup/freezer")
    if (v1 / "freezer.state").exists() or v1.is_dir():
        return v1, False
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup2":
            return Path(left.split()[4]), True
    pytest.fail("no cgroup freezer on this machine")


@pytest.fixture
def freezer_cgroup() -> Iterator[Path]:
    root, _ = _freezer_root()
    cg = root / f"ferryman-test-{os.getpid()}-{time.monotonic_ns()}"
    cg.mkdir()
    try:
        yield cg
    finally:
        deadline = time.monotonic() + 10
        while cg.exists() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                cg.rmdir()
            time.sleep(0.05)


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_workload_in_its_own_cgroup_is_frozen_by_us(cluster: Cluster, freezer_cgroup: Path,
                                                    mode: str) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=64, seed=f"cg-{mode}")
    new_pid = None
    try:
        (freezer_cgroup / "cgroup.procs").write_text(str(w.pid))
        w.reset_gap()
        res, report = cluster.migrate(w.pid, b, "--mode", mode)
        assert res.returncode == 0, res.stderr
        assert str(report["freeze_method"]).startswith("cgroup")
        assert isinstance(report["freeze_ms"], float)
        assert report["freeze_ms"] < 50, "tight polling, not CRIU's 100 ms steps"
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        st = w.status(new_pid)
        assert st["bad_pages"] == 0
        # The restored workload runs (not left frozen in a cgroup).
        beats = int(st["beats"])  # type: ignore[call-overload]
        time.sleep(0.3)
        assert int(w.status(new_pid)["beats"]) > beats  # type: ignore[call-overload]
    finally:
        w.kill(new_pid)


@pytest.mark.parametrize("extra", [("--cold-restore", "images"), (), ("--mode", "postcopy")],
                         ids=["cold-images", "cold-streamed", "postcopy"])
def test_rollback_thaws_the_cgroup(cluster: Cluster, freezer_cgroup: Path,
                                   extra: tuple[str, ...]) -> None:
    """A lazy dump's roll-back (streamed cold, post-copy) thaws the cgroup before it looks
    for the tasks the dump left stopped: frozen, none looked stopped, and the tree stayed
    stopped once thawed."""
    b = cluster.start_agent("b", hide_dir=True)
    held = cluster.hidden_dir / "data.txt"
    held.write_text("only on node A\n")
    w = cluster.workload(mib=16, seed="cg-rollback", hold_file=str(held))
    try:
        (freezer_cgroup / "cgroup.procs").write_text(str(w.pid))
        res, report = cluster.migrate(w.pid, b, "--test-skip-preflight", *extra)
        assert res.returncode == 8, res.stderr
        assert report["result"] == "rolled_back"
        assert str(report["freeze_method"]).startswith("cgroup")
        w.runs_intact()
    finally:
        w.kill()
