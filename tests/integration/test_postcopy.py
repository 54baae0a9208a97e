"""Post-copy (lazy pages) migration between namespace nodes, real criu and userfaultfd."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from ferryman import testhooks
from tests.integration.conftest import PY, Cluster
from tests.support.workloads import alive

EXIT_LOST = 9
FRAMES_MARK = "the page server socket carries relay frames"  # relay-frames-lazy.patch


def criu_processes(cluster: Cluster, *pids: int) -> list[str]:
    """criu processes of this test: naming its directories, or dumping one of ``pids``."""
    out = subprocess.run(["pgrep", "-a", "criu"], capture_output=True, text=True,
                         check=False).stdout
    marks = (str(cluster.base), *(f"-t {p}" for p in pids))
    return [ln for ln in out.splitlines() if any(m in ln for m in marks)]


@pytest.mark.parametrize("mib", [256, 1024])
def test_postcopy_moves_memory_on_demand(cluster: Cluster, mib: int) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=mib, seed=f"lazy-{mib}")
    new_pid = None
    try:
        w.reset_gap()
        res, report = cluster.migrate(w.pid, b, "--mode", "postcopy")
        assert res.returncode == 0, res.stderr
        assert report["result"] == "committed"
        assert report["mode"] == "postcopy"
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert not alive(w.pid)
        # Every page arrived: the destination has all of it, verified page by page.
        st = w.status(new_pid)
        assert st["bad_pages"] == 0
        assert st["pages"] == mib * 256
        assert isinstance(report["memory_complete_ms"], float)
        assert report["memory_complete_ms"] > 0
        assert int(report["lazy_pages"]) >= mib * 256  # type: ignore[call-overload]
        assert report["bytes_transferred"] >= mib << 20  # type: ignore[operator]
        assert b.outcomes()[b.migration_dirs()[0].name].startswith("DONE")
        assert criu_processes(cluster, w.pid) == []
    finally:
        w.kill(new_pid)


@pytest.mark.parametrize(("fill", "compress", "encoder", "decoder"), [
    ("pattern", "on", "criu", "criu"), ("mixed", "on", "criu", "criu"),
    ("mixed", "on", "relay", "criu"), ("mixed", "on", "criu", "relay"),
    ("mixed", "on", "relay", "relay"), ("random", "off", None, None)])
def test_postcopy_pages_take_the_relay_when_compressed_else_criu_s_tls(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch, fill: str, compress: str,
        encoder: str | None, decoder: str | None) -> None:
    """Compressed lazy pages go through the page relay (ferryman's TLS, LZ4 blocks): the
    relay counted every page and the destination's lazy-pages daemon read its socket pair.
    The source's lazy dump writes the relay's frames itself, compressing its pages (its
    CRIU's ``ps_relay_frames``), or, where its CRIU cannot (hidden), the source's relay
    makes them; the destination's lazy-pages daemon decodes them itself likewise, or its
    relay does: each side on its own, in all four pairings. Mixed memory (runs of pattern
    and random pages) makes both kinds of frame, LZ4 and raw, and frames that end inside an
    answer. Uncompressed ones (random memory) take CRIU's own TLS page connection, which
    gathers its records (faster than the relay's asyncio TLS): no relay counted them, the
    daemon connected to the source. Either way every page arrived whole."""
    relay = compress == "on"
    if encoder == "relay":
        monkeypatch.setenv(testhooks.HIDE_ENV, "relay_frames")
    hide = ("--test-hide-feature", "relay_frames") if decoder == "relay" else ()
    b = cluster.start_agent("b", *hide)
    w = cluster.workload(mib=128, seed=f"relay-{fill}", fill=fill)
    new_pid = None
    try:
        new_pid, report = cluster.moved_with_report(w, b, "--mode", "postcopy",
                                                    "--compress", compress)
        assert w.status(new_pid)["pages"] == 128 * 256
        assert w.status(new_pid)["bad_pages"] == 0
        comp = report["compression"]
        assert isinstance(comp, dict)
        assert comp["relay"] is relay
        assert comp["on"] is relay
        if relay:
            assert comp["raw_bytes"] >= 128 << 20  # every lazy page went through it
            shrunk = 4 if fill == "pattern" else 1.5  # half of mixed is incompressible
            assert comp["wire_bytes"] * shrunk < comp["raw_bytes"]
            assert comp["framed_by"] == encoder
        else:
            assert "raw_bytes" not in comp
        lazy_log = (b.migration_dirs()[0] / "lazy-pages.log").read_text()
        assert ("Reusing ps socket" in lazy_log) is relay
        assert (FRAMES_MARK in lazy_log) is (decoder == "criu")
        assert int(report["lazy_pages"]) >= 128 * 256  # type: ignore[call-overload]
    finally:
        w.kill(new_pid)


def test_postcopy_without_the_relay_patch_uses_criu_s_own_page_path(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source whose CRIU cannot serve lazy pages on a handed socket (``lazy_relay``
    hidden: ``criu check --feature lazy_ps_socket`` failing) never hands it one: the lazy
    dump listens, CRIU's own TLS page connection carries the pages, and they all arrive."""
    monkeypatch.setenv(testhooks.HIDE_ENV, "lazy_relay")
    b = cluster.start_agent("b")
    w = cluster.workload(mib=64, seed="no-relay")
    new_pid = None
    try:
        new_pid, report = cluster.moved_with_report(w, b, "--mode", "postcopy")
        comp = report["compression"]
        assert isinstance(comp, dict)
        assert comp["relay"] is False
        assert comp["on"] is False
        assert "raw_bytes" not in comp
        lazy_log = (b.migration_dirs()[0] / "lazy-pages.log").read_text()
        assert "Reusing ps socket" not in lazy_log
    finally:
        w.kill(new_pid)


def test_postcopy_of_a_writing_workload_keeps_memory_consistent(cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=256, seed="lazy-writer", dirty_rate=20000)
    new_pid = None
    try:
        before = w.status()
        res, report = cluster.migrate(w.pid, b, "--mode", "postcopy")
        assert res.returncode == 0, res.stderr
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        after = w.status(new_pid)
        assert after["bad_pages"] == 0
        assert int(after["writes"]) > int(before["writes"])  # type: ignore[call-overload]
    finally:
        w.kill(new_pid)


def _migrate_in_background(cluster: Cluster, pid: int, endpoint: str, report: Path
                           ) -> subprocess.Popen[str]:
    argv = cluster.topology["a"].argv(
        PY, "-m", "ferryman", "migrate", str(pid), "--to", endpoint, "--mode", "postcopy",
        "--pki", str(cluster.pki), "--name", "a", "--state-dir", str(cluster.base / "src"),
        "--report", str(report))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_beat(path: Path) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while (beat := _beat(path)) is None:
        assert time.monotonic() < deadline, "the workload wrote no heartbeat"
        time.sleep(0.01)
    return beat


def _beat(path: Path) -> dict[str, int] | None:
    try:
        data: dict[str, int] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def test_workload_answers_during_the_page_tail(cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    beat = cluster.base / "beat.json"
    w = cluster.workload(mib=1024, seed="lazy-beat", beat_file=str(beat))
    first = _first_beat(beat)
    report = cluster.base / "tail-report.json"
    new_pid = None
    try:
        proc = _migrate_in_background(cluster, w.pid, b.endpoint, report)
        seen_on_b: list[int] = []
        while proc.poll() is None:
            now = _beat(beat)
            if now and now["start_time"] != first["start_time"]:
                seen_on_b.append(now["beats"])
            time.sleep(0.005)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        data = json.loads(report.read_text())
        new_pid = data["destination_pid"]
        # While the migration was still fetching pages, the restored workload kept beating.
        assert len(set(seen_on_b)) >= 2, (seen_on_b, data["memory_complete_ms"])
        assert w.status(new_pid)["bad_pages"] == 0
    finally:
        w.kill(new_pid)


def test_link_cut_during_the_tail_is_reported_lost_without_hanging(cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    beat = cluster.base / "beat.json"
    w = cluster.workload(mib=2048, seed="lazy-cut", beat_file=str(beat))
    first = _first_beat(beat)
    report = cluster.base / "cut-report.json"
    new_pid = None
    try:
        proc = _migrate_in_background(cluster, w.pid, b.endpoint, report)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            now = _beat(beat)
            if now and now["start_time"] != first["start_time"]:
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the tail ended before the link could be cut"
        cluster.topology["b"].link(up=False)
        cut_at = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - cut_at
        assert proc.returncode == EXIT_LOST, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("ferryman: error: workload (source PID ")
        assert "LOST" in last
        assert took < 30
        data = json.loads(report.read_text())
        assert data["result"] == "lost"
        new_pid = data["destination_pid"]
        # Nothing is left running: neither copy of the workload, nor any criu, on either node.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (alive(w.pid) or alive(new_pid)
                                               or criu_processes(cluster, w.pid)):
            time.sleep(0.1)
        assert not alive(w.pid)
        assert not alive(new_pid)
        assert criu_processes(cluster, w.pid) == []
        assert "LOST" in b.log()
    finally:
        cluster.topology["b"].link(up=True)
        w.kill(new_pid)


def test_postcopy_restore_failure_rolls_back_to_the_source(cluster: Cluster) -> None:
    """Before the commit, a failed lazy restore leaves the workload running on A, intact."""
    b = cluster.start_agent("b", hide_dir=True)
    held = cluster.hidden_dir / "data.txt"
    held.write_text("only on node A\n")
    w = cluster.workload(mib=128, seed="lazy-rollback", hold_file=str(held))
    try:
        res, report = cluster.migrate(w.pid, b, "--mode", "postcopy", "--test-skip-preflight")
        assert res.returncode == 8, res.stderr
        assert report["result"] == "rolled_back"
        assert alive(w.pid)
        st = w.status()
        assert st["bad_pages"] == 0
        beats = int(st["beats"])  # type: ignore[call-overload]
        time.sleep(0.3)
        assert int(w.status()["beats"]) > beats  # type: ignore[call-overload]
        assert b.migration_dirs() == []
        assert criu_processes(cluster, w.pid) == []
    finally:
        w.kill()
