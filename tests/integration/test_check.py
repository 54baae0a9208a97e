"""``ferryman check`` and migrate's pre-flight gate, with real agents, criu and namespace nodes.

Each check has a real failing case. The nodes share one machine (same filesystem and PID
space), so: a file is "missing on B" in a directory B's agent sees as an empty tmpfs; a PID is
"taken on B" for a workload outside its own PID namespace; an address is "missing on B" when
the workload binds A's address.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman import testhooks
from ferryman.criu.rpc import HAS_TRACK_MEM_UFFD
from ferryman.host import wptrack
from tests.integration.conftest import PY, Agent, Cluster, run_cli
from tests.support.workloads import alive, children, kill_launched

EXIT_PREFLIGHT = 40
TRACKING = {"precopy", "hybrid"}  # need a dirty-page tracker: uffd-wp on this kernel
# this machine's kernel has no soft-dirty; pre-copy tracks with userfaultfd write-protect
UFFD_WP = wptrack.kernel_supports() and HAS_TRACK_MEM_UFFD
HIDE_UFFD_WP = {testhooks.HIDE_ENV: "mem_track_uffd"}


def possible(*modes: str) -> list[str]:
    """``modes`` in the verdict's order, less pre-copy and hybrid where nothing can track."""
    return [m for m in ("cold", "postcopy", "precopy", "hybrid")
            if m in modes and (UFFD_WP or m not in TRACKING)]
Verdict = dict[str, object]


def check_roots(cluster: Cluster) -> tuple[str, str]:
    """B's agent answers about the test's files (its tmp_path is private to root)."""
    return ("--check-roots", str(cluster.base))


def check(cluster: Cluster, pid: int, dest: Agent, *extra: str
          ) -> tuple[subprocess.CompletedProcess[str], Verdict]:
    res = run_cli("check", str(pid), "--to", dest.endpoint, "--pki", str(cluster.pki),
                  "--name", "a", "--state-dir", str(cluster.base / "state-src-a"), "--json",
                  *extra, node=cluster.topology["a"])
    data: Verdict = json.loads(res.stdout) if res.stdout.strip() else {}
    return res, data


def rows(verdict: Verdict, status: str | None = None) -> dict[str, dict[str, object]]:
    out = {}
    for r in verdict["rows"]:  # type: ignore[attr-defined]
        if status is None or r["status"] == status:
            out[r["check"]] = r
    return out


def fails(verdict: Verdict) -> dict[str, dict[str, object]]:
    """FAIL rows that concern a mode both nodes implement (this kernel has no soft-dirty, so
    pre-copy always fails here, which is right but not what these tests look at)."""
    supported = set(verdict["supported_modes"]) - TRACKING  # type: ignore[call-overload]
    return {k: r for k, r in rows(verdict, "fail").items()
            if supported & set(r["modes"])}  # type: ignore[call-overload]


def only_failure(cluster: Cluster, pid: int, dest: Agent, name: str
                 ) -> tuple[Verdict, dict[str, object]]:
    """``check`` refuses ``pid`` for the one row ``name``: the verdict and that row."""
    res, v = check(cluster, pid, dest)
    assert res.returncode == EXIT_PREFLIGHT, res.stderr
    fail = fails(v)
    assert set(fail) == {name}, fail
    return v, fail[name]


def stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] in "tT"


@contextlib.contextmanager
def program(cluster: Cluster, *argv: str, own_pid_ns: bool = True) -> Iterator[int]:
    """Run ``argv`` in node A (in its own PID namespace unless told); yields its host PID."""
    cmd = ["unshare", "-p", "-f", "setsid", *argv] if own_pid_ns else ["setsid", *argv]
    launcher = cluster.topology["a"].popen(*cmd, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = str(Path(shutil.which(argv[0]) or argv[0]).resolve())
    pid = 0
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            kids = children(launcher.pid) if own_pid_ns else [launcher.pid]
            with contextlib.suppress(OSError):
                if kids and os.readlink(f"/proc/{kids[0]}/exe") == target:
                    pid = kids[0]
                    break
            time.sleep(0.02)
        assert pid, "the program did not start"
        yield pid
    finally:
        kill_launched(pid, launcher)


def test_passing_case_allows_every_implemented_mode_and_measures_the_freeze(
        cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    w = cluster.workload(mib=256, seed="check-ok")
    try:
        w.status()
        w.reset_gap()
        res, v = check(cluster, w.pid, b)
        assert res.returncode == 0, res.stderr
        assert v["can_move"] is True
        every = possible("cold", "postcopy", "precopy", "hybrid")
        assert v["allowed_modes"] == every
        assert v["clean_modes"] == every
        assert not fails(v)
        assert rows(v, "fail").keys() <= (set() if UFFD_WP else {"kernel.dirty-tracking"})
        if UFFD_WP:
            tracker = rows(v, "pass")["kernel.dirty-tracking"]
            assert "uffd-wp" in str(tracker["detail"])
        assert all(not r["modes"] for r in rows(v, "warn").values()), "only notes may warn"
        for name in ("criu", "kernel.userfaultfd", "kernel.pipe-size", "cpu", "pids",
                     "addresses", "ports", "files", "memory", "disk", "dump"):
            assert name in rows(v, "pass"), name
        # The dry-run dump froze the workload briefly; our bound covers what it saw.
        dry = v["dry_run"]
        assert isinstance(dry, dict)
        assert dry["ok"] is True
        freeze = float(dry["freeze_ms"])
        gap = float(w.status()["max_gap_ms"])  # type: ignore[arg-type]
        assert gap < freeze + 5, (gap, freeze)
        assert freeze < 500, freeze
        assert w.status()["bad_pages"] == 0
        assert not stopped(w.pid)
        assert b.migration_dirs() == []
        # The table for humans says the same.
        text = run_cli("check", str(w.pid), "--to", b.endpoint, "--pki", str(cluster.pki),
                       "--name", "a", "--state-dir", str(cluster.base / "s"),
                       node=cluster.topology["a"])
        assert text.returncode == 0, text.stderr
        assert "verdict: CAN MOVE; allowed modes: cold, postcopy" in text.stdout
        assert "dry-run dump succeeded" in text.stdout
        assert "link to b: " in text.stdout  # timed alongside the dry run, remembered
    finally:
        w.kill()


def test_pid_taken_on_destination_fails_and_migrate_refuses_before_freezing(
        cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    with program(cluster, "sleep", "1000", own_pid_ns=False) as pid:
        res, v = check(cluster, pid, b)
        assert res.returncode == EXIT_PREFLIGHT, res.stderr
        assert v["can_move"] is False
        assert v["allowed_modes"] == []
        fail = fails(v)
        assert set(fail) == {"pids"}, fail
        assert str(pid) in str(fail["pids"]["detail"])
        assert "unshare -p -f" in str(fail["pids"]["fix"])
        assert res.stderr.strip().startswith("ferryman: error:")
        # migrate runs the same check and refuses: nothing frozen, nothing sent.
        mig, report = cluster.migrate(pid, b)
        assert mig.returncode == EXIT_PREFLIGHT, mig.stderr
        assert "pre-flight check refused cold migration: pids:" in mig.stderr
        assert alive(pid)
        assert not stopped(pid)
        assert report["result"] == "failed"
        assert b.migration_dirs() == []


def pty_of(pid: int) -> int | None:
    """The index of the first /dev/pts terminal ``pid`` holds open, if any."""
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                head, _, tail = os.readlink(f"/proc/{pid}/fd/{fd}").rpartition("/")
                if head == "/dev/pts" and tail.isdigit():
                    return int(tail)
    return None


def held_pty(pid: int, timeout: float = 20.0) -> int:
    """The /dev/pts index ``pid`` holds, once it has opened one."""
    deadline = time.monotonic() + timeout
    while (index := pty_of(pid)) is None:
        assert time.monotonic() < deadline, "the program opened no terminal"
        time.sleep(0.02)
    return index


def test_a_terminal_taken_on_destination_fails_and_migrate_refuses_before_freezing(
        cluster: Cluster) -> None:
    """CRIU restores a terminal at its index in the destination's /dev/pts. On this one
    machine the source's own terminal holds that index there, as a login session would on
    another node; hand-typed CRIU would fail at the restore, ferryman refuses before."""
    b = cluster.start_agent("b")
    hold = "import os, time; m, s = os.openpty(); time.sleep(1000)"
    with program(cluster, sys.executable, "-c", hold) as pid:
        index = held_pty(pid)
        _, row = only_failure(cluster, pid, b, "ptys")
        assert f"/dev/pts/{index}" in str(row["detail"])
        assert "/dev/pts of its own" in str(row["fix"])
        mig, report = cluster.migrate(pid, b)
        assert mig.returncode == EXIT_PREFLIGHT, mig.stderr
        assert "pre-flight check refused cold migration: ptys:" in mig.stderr
        assert alive(pid)
        assert not stopped(pid)
        assert pty_of(pid) == index
        assert report["result"] == "failed"
        assert b.migration_dirs() == []


def test_address_missing_on_destination(cluster: Cluster) -> None:
    b = cluster.start_agent("b")
    a_ip = cluster.topology["a"].ip
    server = ("import socket, time\n"
              "s = socket.socket()\n"
              f"s.bind(('{a_ip}', 9099))\n"
              "s.listen()\n"
              "time.sleep(1000)\n")
    with program(cluster, PY, "-c", server) as pid:
        deadline = time.monotonic() + 10
        while not cluster.topology["a"].listening(9099):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        v, row = only_failure(cluster, pid, b, "addresses")
        assert f"lacks {a_ip}" in str(row["detail"])
        assert "tcp" in str(row["detail"])
        assert "ports" in rows(v, "pass")
        assert "dump" in rows(v, "pass"), "a listening socket itself is dumpable"


def test_open_file_missing_on_destination_unless_synced(cluster: Cluster) -> None:
    b = cluster.start_agent("b", *check_roots(cluster), hide_dir=True)
    held = cluster.hidden_dir / "data.txt"
    held.write_text("only on node A\n")
    w = cluster.workload(mib=16, seed="check-file", hold_file=str(held))
    try:
        res, v = check(cluster, w.pid, b)
        assert res.returncode == EXIT_PREFLIGHT, res.stderr
        fail = fails(v)
        assert set(fail) == {"files"}, fail
        assert f"{held} (fd) missing" in str(fail["files"]["detail"])
        assert "--sync" in str(fail["files"]["fix"])
        res, v = check(cluster, w.pid, b, "--sync", str(cluster.hidden_dir))
        assert res.returncode == 0, res.stderr
        assert "1 in synced paths" in str(rows(v, "pass")["files"]["detail"])
    finally:
        w.kill()


def _copy_on_both(cluster: Cluster, b: Agent, src: Path, dst: Path) -> None:
    """``dst`` on node A and, the same bytes with another mtime, in B's mount namespace."""
    shutil.copy2(src, dst)
    subprocess.run(["nsenter", "-t", str(b.proc.pid), "-m", "sh", "-c",
                    f'cp "{src}" "{dst}" && touch -d 2001-01-01 "{dst}"'], check=True)


def test_another_build_of_the_executable_warns_and_migrate_needs_force(cluster: Cluster) -> None:
    b = cluster.start_agent("b", *check_roots(cluster), hide_dir=True)
    python = cluster.hidden_dir / "python3"
    _copy_on_both(cluster, b, Path(sys.executable).resolve(), python)
    held = cluster.hidden_dir / "config.txt"
    _copy_on_both(cluster, b, Path(__file__), held)
    w = cluster.workload(mib=16, seed="check-mtime", hold_file=str(held), python=str(python))
    new_pid: int | None = None
    try:
        res, v = check(cluster, w.pid, b)
        assert res.returncode == 0, res.stderr  # it can move, with a warning
        warn = rows(v, "warn")
        assert f"{python} (exe) has another mtime" in str(warn["files.mtime"]["detail"])
        # the open data file of another mtime is only a note
        assert f"{held} (fd) has another mtime" in str(warn["files.data"]["detail"])
        assert warn["files.data"]["modes"] == []
        assert v["allowed_modes"] == possible("cold", "postcopy", "precopy", "hybrid")
        assert v["clean_modes"] == []
        mig, _ = cluster.migrate(w.pid, b)
        assert mig.returncode == EXIT_PREFLIGHT, mig.stderr
        assert "--force" in mig.stderr
        assert alive(w.pid)
        assert b.migration_dirs() == []
        new_pid = cluster.moved(w, b, "--force")
    finally:
        w.kill(new_pid)


def test_open_data_file_of_another_mtime_is_a_note_and_moves(cluster: Cluster) -> None:
    b = cluster.start_agent("b", *check_roots(cluster), hide_dir=True)
    held = cluster.hidden_dir / "config.txt"
    _copy_on_both(cluster, b, Path(__file__), held)
    w = cluster.workload(mib=16, seed="check-data-mtime", hold_file=str(held))
    new_pid: int | None = None
    try:
        res, v = check(cluster, w.pid, b)
        assert res.returncode == 0, res.stderr
        assert "files.data" in rows(v, "warn")
        assert v["clean_modes"] == possible("cold", "postcopy", "precopy", "hybrid"), \
            "a note blocks no mode"
        new_pid = cluster.moved(w, b)
    finally:
        w.kill(new_pid)


def test_too_little_disk_on_destination(cluster: Cluster) -> None:
    state = cluster.base / "state-b"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(state)], check=True)
    try:
        b = cluster.start_agent("b")
        w = cluster.workload(mib=64, seed="check-disk")
        try:
            res, v = check(cluster, w.pid, b)
            assert res.returncode == EXIT_PREFLIGHT, res.stderr
            fail = fails(v)
            assert set(fail) == {"disk"}, fail
            assert "even post-copy needs" in str(fail["disk"]["detail"])
            assert v["allowed_modes"] == []
        finally:
            w.kill()
            b.kill()
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_auto_mode_takes_what_the_verdict_allows(cluster: Cluster,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Room on B for post-copy's images, and a streamed cold restore's, but not for page
    files: the check allows cold (streamed) and post-copy, not pre-copy; cold with page
    files is refused before anything is frozen; --mode auto moves it post-copy by its
    timing (on a source without a dirty-page tracker: uffd-wp hidden, as soft-dirty is
    here)."""
    for name, value in HIDE_UFFD_WP.items():
        monkeypatch.setenv(name, value)
    state = cluster.base / "state-b"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", str(state)], check=True)
    new_pid = None
    try:
        b = cluster.start_agent("b")
        w = cluster.workload(mib=64, seed="check-auto")
        try:
            res, v = check(cluster, w.pid, b)
            assert res.returncode == 0, res.stderr
            assert v["allowed_modes"] == ["cold", "postcopy"]
            assert "disk" not in fails(v)  # it concerns pre-copy only
            assert rows(v, "fail")["disk"]["modes"] == ["precopy"]
            images, _ = cluster.migrate(w.pid, b, "--mode", "cold", "--cold-restore", "images")
            assert images.returncode != 0
            assert "MiB free for images" in images.stderr, images.stderr
            assert alive(w.pid)
            mig, report = cluster.migrate(w.pid, b, "--mode", "auto", "--link-mbps", "1000")
            assert mig.returncode == 0, mig.stderr
            assert "--mode auto chose postcopy" in mig.stderr
            assert report["mode"] == "postcopy"
            # cold (64 MiB at the assumed 1 Gbit/s) misses 300 ms; this kernel cannot pre-copy
            assert "no dirty tracking" in str(report["mode_reason"]), report["mode_reason"]
            moved = report["destination_pid"]
            assert isinstance(moved, int)
            new_pid = moved
            assert w.status(new_pid)["bad_pages"] == 0
        finally:
            w.kill(new_pid)
            b.kill()
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_auto_mode_times_the_link_and_chooses_by_it(cluster: Cluster,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Cold or post-copy by the measured link, on a source that cannot pre-copy (uffd-wp
    hidden; this kernel has no soft-dirty)."""
    for name, value in HIDE_UFFD_WP.items():
        monkeypatch.setenv(name, value)
    b = cluster.start_agent("b")
    w = cluster.workload(mib=16, seed="auto-link")
    new_pid = None
    try:
        mig, report = cluster.migrate(w.pid, b, "--mode", "auto")
        assert mig.returncode == 0, mig.stderr
        assert "timing the link" in mig.stderr
        rate = report["link_bytes_per_s"]
        assert isinstance(rate, float)
        assert rate > 10e6  # loopback between namespaces, over TLS: well above 80 Mbit/s
        reason = str(report["mode_reason"])
        assert f"(link measured {rate / 125_000:.0f} Mbit/s)" in reason, reason
        # the predicted cold downtime (RSS at that rate, plus the fixed cost) decides: cold
        # when it fits the 300 ms budget, else post-copy (this kernel cannot pre-copy)
        predicted = report["rss_bytes"] / rate * 1000
        assert reason.startswith("cold downtime"), reason
        assert float(reason.split()[2]) > predicted
        assert report["mode"] == ("cold" if "fits budget 300 ms" in reason else "postcopy")
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert w.status(new_pid)["bad_pages"] == 0
    finally:
        w.kill(new_pid)


def test_a_link_timed_by_check_is_what_the_next_migration_uses(cluster: Cluster) -> None:
    """``check`` times the link alongside its dry run and remembers it in the state dir; a
    migration there within ten minutes takes it instead of timing it before its freeze. A
    memo it cannot read is no memo: the next migration times the link and writes it anew."""
    b = cluster.start_agent("b")
    memo_file = cluster.base / "state-src-a" / "links.json"
    key = f"b@{b.endpoint}"
    w = cluster.workload(mib=16, seed="link-memo")
    new_pid = None
    try:
        res, v = check(cluster, w.pid, b)
        assert res.returncode == 0, res.stderr
        rate = v["link_bytes_per_s"]
        assert isinstance(rate, float)
        assert rate > 10e6, rate
        memo = json.loads(memo_file.read_text())
        assert memo[key]["bytes_per_s"] == rate
        assert memo[key]["by"] == "check"
        mig, report = cluster.migrate(w.pid, b)  # cold, --compress auto: needs the link
        assert mig.returncode == 0, mig.stderr
        assert report["link_bytes_per_s"] == rate
        assert str(report["link_source"]).startswith("remembered: timed by check "), report
        assert "link_test" not in report["steps"]  # type: ignore[operator]
        assert "timing the link" not in mig.stderr
        assert "link to b" not in mig.stderr
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert w.status(new_pid)["bad_pages"] == 0
    finally:
        w.kill(new_pid)
    memo_file.write_text('{"' + key + '": {"bytes_per_s": "fast", "at": 1')  # damaged
    w = cluster.workload(mib=16, seed="link-memo-2")
    new_pid = None
    try:
        mig, report = cluster.migrate(w.pid, b)
        assert mig.returncode == 0, mig.stderr
        assert report["link_source"] == "measured"
        assert "link_test" in report["steps"]  # type: ignore[operator]
        memo = json.loads(memo_file.read_text())
        assert memo[key]["by"] == "migrate"
        assert memo[key]["bytes_per_s"] == report["link_bytes_per_s"]
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert w.status(new_pid)["bad_pages"] == 0
    finally:
        w.kill(new_pid)


@pytest.mark.skipif(not UFFD_WP, reason="no userfaultfd async write-protect here")
def test_auto_mode_picks_precopy_with_uffd_wp(cluster: Cluster) -> None:
    """No soft-dirty here, but uffd-wp: a workload whose cold move misses the budget on a
    slow link, writing slowly, is pre-copied; the dirty rate measured by uffd-wp."""
    b = cluster.start_agent("b")
    w = cluster.workload(mib=64, seed="auto-uffd", dirty_rate=100)
    new_pid = None
    try:
        mig, report = cluster.migrate(w.pid, b, "--mode", "auto", "--link-mbps", "100")
        assert mig.returncode == 0, mig.stderr
        assert "--mode auto chose precopy" in mig.stderr
        assert report["mode"] == "precopy"
        assert report["dirty_tracker"] == "uffd-wp"
        reason = str(report["mode_reason"])
        assert "pre-copy converges" in reason, reason
        measured = float(reason.split("dirty rate measured ")[1].split(maxsplit=1)[0])
        assert 50 <= measured < 5000, reason  # 100 pages/s and the interpreter's own
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert w.status(new_pid)["bad_pages"] == 0
    finally:
        w.kill(new_pid)


def test_destination_criu_lacking_a_feature(cluster: Cluster) -> None:
    b = cluster.start_agent("b", "--test-hide-feature", "lazy_pages")
    w = cluster.workload(mib=16, seed="check-feature")
    try:
        res, v = check(cluster, w.pid, b, "--mode", "postcopy")
        assert res.returncode == EXIT_PREFLIGHT, res.stderr
        fail = fails(v)
        assert set(fail) == {"kernel.userfaultfd"}, fail
        assert fail["kernel.userfaultfd"]["side"] == "destination"
        assert fail["kernel.userfaultfd"]["modes"] == ["postcopy", "hybrid"]
        assert v["allowed_modes"] == possible("cold", "precopy")
        # Without a mode asked for, it can still move (cold; pre-copy with uffd-wp).
        res, v = check(cluster, w.pid, b)
        assert res.returncode == 0, res.stderr
        assert v["allowed_modes"] == possible("cold", "precopy")
        # migrate --mode postcopy is refused before anything is frozen.
        w.reset_gap()
        mig, _ = cluster.migrate(w.pid, b, "--mode", "postcopy")
        assert mig.returncode == EXIT_PREFLIGHT, mig.stderr
        assert "userfaultfd" in mig.stderr
        st = w.status()
        assert float(st["max_gap_ms"]) < 20, "no dry run: the mode was already ruled out"  # type: ignore[arg-type]
    finally:
        w.kill()


@pytest.mark.parametrize("pid", ["4000000"])
def test_unknown_pid(cluster: Cluster, pid: str) -> None:
    b = cluster.start_agent("b")
    res = run_cli("check", pid, "--to", b.endpoint, "--pki", str(cluster.pki), "--name", "a",
                  "--state-dir", str(cluster.base / "s"), node=cluster.topology["a"])
    assert res.returncode == 3
    assert "no process with PID 4000000" in res.stderr


@pytest.mark.parametrize("mode", ["precopy", "hybrid"])
def test_precopy_refused_without_dirty_tracking_before_anything_freezes(
        cluster: Cluster, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """This kernel has no soft-dirty, and the source is told it has no uffd-wp either
    (FERRYMAN_TEST_HIDE_FEATURES): pre-copy and hybrid are refused, nothing is frozen."""
    for name, value in HIDE_UFFD_WP.items():
        monkeypatch.setenv(name, value)
    b = cluster.start_agent("b")
    w = cluster.workload(mib=16, seed=f"check-{mode}")
    try:
        res, v = check(cluster, w.pid, b)
        assert res.returncode == 0, res.stderr  # cold and post-copy can move it
        assert set(v["supported_modes"]) >= TRACKING  # type: ignore[arg-type]
        assert rows(v, "fail")["kernel.dirty-tracking"]["modes"] == ["precopy", "hybrid"]
        assert not TRACKING & set(v["allowed_modes"])  # type: ignore[arg-type]
        w.reset_gap()
        mig, report = cluster.migrate(w.pid, b, "--mode", mode)
        assert mig.returncode == EXIT_PREFLIGHT, mig.stderr
        assert f"pre-flight check refused {mode} migration: kernel.dirty-tracking:" in mig.stderr
        assert "CONFIG_MEM_SOFT_DIRTY" in mig.stderr
        assert report["result"] == "failed"
        assert report["dry_run_freeze_ms"] is None  # the source's own rows ruled it out
        # Past the check (test-only), the source still refuses before its first pre-dump.
        mig, report = cluster.migrate(w.pid, b, "--mode", mode, "--test-skip-preflight")
        assert mig.returncode != 0
        error = mig.stderr.strip().splitlines()[-1]
        assert error.startswith("ferryman: error:"), mig.stderr
        assert "soft-dirty" in error
        assert "--mode cold or postcopy" in error
        assert report["iterations"] == []
        st = w.status()
        assert float(st["max_gap_ms"]) < 20, "frozen although refused"  # type: ignore[arg-type]
        assert st["bad_pages"] == 0
        assert b.migration_dirs() == []
    finally:
        w.kill()


DROPS_TO_NOBODY = "import os, time; os.setgid(65534); os.setuid(65534); time.sleep(1000)"


def test_a_service_running_as_another_user_is_explained(cluster: Cluster) -> None:
    """Where CRIU lacks CAP_SYS_RESOURCE (this machine's container) it cannot dump a task
    that dropped to another user, and says something else (``Can't get rlimit``); the row
    names the task and the missing capability. Where CRIU has it, the dump just works."""
    b = cluster.start_agent("b")
    own = Path("/proc/self/status").read_text()
    capeff = int(next(ln for ln in own.splitlines() if ln.startswith("CapEff:")).split()[1], 16)
    with program(cluster, PY, "-c", DROPS_TO_NOBODY) as pid:
        deadline = time.monotonic() + 10
        while "\t65534\t" not in Path(f"/proc/{pid}/status").read_text():
            assert time.monotonic() < deadline, "it did not drop to nobody"
            time.sleep(0.02)
        res, v = check(cluster, pid, b)
        dump = rows(v)["dump"]
        if capeff >> 24 & 1:
            assert dump["status"] == "pass", dump
            return
        assert res.returncode == EXIT_PREFLIGHT, res.stderr
        assert dump["status"] == "fail", dump
        assert f"PID {pid} (python" in str(dump["detail"]), dump
        assert "runs as uid 65534" in str(dump["detail"]), dump
        assert "CAP_SYS_RESOURCE" in str(dump["detail"]), dump
        assert "root" in str(dump["fix"]), dump
        assert alive(pid)
        assert not stopped(pid)


HOLDS_A_USERFAULTFD = ("import ctypes, os, time\n"
                       "assert ctypes.CDLL(None).syscall(323, os.O_CLOEXEC) >= 0\n"
                       "time.sleep(1000)\n")  # CRIU cannot dump a userfaultfd


def test_the_plan_sent_beside_the_dry_run_is_aborted_when_the_dry_run_fails(
        cluster: Cluster) -> None:
    """With a mode given, the Plan goes out while the dry run dumps (the destination starts
    its page server meanwhile: agent/source.py); a dry run that fails still refuses the
    migration as before, and the Plan is aborted: the workload runs on unfrozen, nothing is
    left on the destination."""
    b = cluster.start_agent("b")
    with program(cluster, PY, "-c", HOLDS_A_USERFAULTFD) as pid:
        deadline = time.monotonic() + 10
        while not any(os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[userfaultfd]"
                      for fd in os.listdir(f"/proc/{pid}/fd")):
            assert time.monotonic() < deadline, "it opened no userfaultfd"
            time.sleep(0.02)
        mig, report = cluster.migrate(pid, b)
        assert mig.returncode == EXIT_PREFLIGHT, mig.stderr
        assert "pre-flight check refused cold migration: dump:" in mig.stderr, mig.stderr
        assert "userfaultfd" in mig.stderr, mig.stderr
        steps = report["steps"]
        assert isinstance(steps, dict)
        assert "plan_ready" in steps, "the Plan was not answered before the dry run's verdict"
        assert "dry_run" in steps
        assert report["result"] == "failed"
        assert alive(pid)
        assert not stopped(pid)
        assert b.migration_dirs() == []
        assert "source aborted the migration" in b.log()
