"""Cold with a streamed restore (docs/ARCHITECTURE.md, section 4.2.1): the pages go straight
into the tree restored stopped on the destination, which says Restored only once it has every
one; real agents, real criu, real namespaces."""

from __future__ import annotations

import os
import signal
import threading
import time

from tests.integration.conftest import Cluster
from tests.support.workloads import alive, start_time

EXIT_ROLLED_BACK = 8


def test_cold_streams_the_pages_into_the_stopped_tree_by_default(cluster: Cluster) -> None:
    cluster.start_agent("a")
    b = cluster.start_agent("b")
    w = cluster.workload(mib=256, seed="streamed")
    new_pid = None
    try:
        res, report = cluster.migrate(w.pid, b)
        assert res.returncode == 0, res.stderr
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert report["mode"] == "cold"
        assert report["streamed"] is True
        assert report["lazy_pages"] >= 256 * 256  # type: ignore[operator]
        assert report["streamed_fetch_ms"] > 0  # type: ignore[operator]
        assert report["memory_complete_ms"] is None  # no page tail after the resume
        assert report["bytes_transferred"] >= 256 << 20  # type: ignore[operator]
        assert "streamed:" in res.stdout
        assert not alive(w.pid)
        w.runs_intact(new_pid, mib=256)
        assert "every page is in the stopped tree" in b.log()
        (mig,) = b.migration_dirs()
        assert b.outcomes()[mig.name] == f"DONE {new_pid}\n"
    finally:
        w.kill(new_pid)


def test_cold_restore_images_keeps_the_page_files(cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=64, seed="images")
    new_pid = None
    try:
        new_pid, report = cluster.moved_with_report(w, b, "--cold-restore", "images")
        assert report["streamed"] is False
        assert report["lazy_pages"] is None
        assert report["page_bytes"] >= 64 << 20  # type: ignore[operator]
    finally:
        w.kill(new_pid)


def test_destination_killed_while_the_pages_stream_rolls_back(cluster: Cluster) -> None:
    """B's agent dies after its restore, while every page is being fetched into the stopped
    tree: the workload goes on at the source, intact; the restarted agent kills the
    incomplete tree its FETCHING record names."""
    b = cluster.start_agent("b")
    w = cluster.workload(mib=1024, seed="stream-kill-b")
    ident = start_time(w.pid)
    seen: list[str] = []

    def kill_b_while_fetching() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            records = [r for r in b.outcomes().values() if r.startswith("FETCHING ")]
            if records:
                seen.append(records[0])
                b.kill()
                return
            time.sleep(0.002)

    t = threading.Thread(target=kill_b_while_fetching, daemon=True)
    t.start()
    restored = 0
    try:
        res, report = cluster.migrate(w.pid, b)
        t.join(5)
        assert seen, "B was not killed while the pages streamed"
        restored = int(seen[0].split()[1])
        assert res.returncode == EXIT_ROLLED_BACK, res.stderr
        assert report["result"] == "rolled_back"
        assert alive(w.pid)
        assert start_time(w.pid) == ident
        w.runs_intact()
        b2 = cluster.start_agent("b")
        assert "restored here while its pages came" in b2.log()
        deadline = time.monotonic() + 10
        while alive(restored) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(restored), "the incomplete tree outlived the agent's restart"
        assert all(r.startswith("KILLED ") for r in b2.outcomes().values())
    finally:
        if restored and alive(restored):
            os.kill(restored, signal.SIGKILL)
        w.kill()
