"""Trees holding file locks and deleted files move as a hand-typed criu moves them (with
``--file-locks`` and ``--ghost-limit``), with real agents, criu and namespace nodes.

The nodes share one filesystem, so a lock file there is the same file on both: the frozen
source keeps its lock until the commit, and the pre-flight refuses before freezing anything.
A lock file under ``hidden_dir`` (an empty tmpfs for B's agent, which the test fills with
the same contents) is B's own, as on two machines: the restored tree holds its locks again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ferryman.host.filelocks import parse_locks
from tests.integration.conftest import PY, Agent, Cluster
from tests.integration.test_check import (
    EXIT_PREFLIGHT,
    UFFD_WP,
    check,
    check_roots,
    fails,
    program,
    stopped,
)
from tests.support.faults import descendants
from tests.support.workloads import alive

LOCKER = str(Path(__file__).resolve().parents[1] / "support" / "lock_workload.py")
FILES = ("app.pid", "app.db")


def lock_files(directory: Path) -> None:
    for name in FILES:
        (directory / name).write_text("locked\n")


def holders() -> set[tuple[str, int]]:
    """(kind, owner PID) of every lock held on this machine."""
    return {(lock.kind, lock.pid) for lock in parse_locks(Path("/proc/locks").read_text())}


def status(pid: int, path: Path) -> dict[str, object]:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, "the workload did not answer"
        time.sleep(0.02)
    data: dict[str, object] = json.loads(path.read_text())
    return data


def wait_until(what: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_lock_on_a_file_both_nodes_share_is_refused_before_freezing(
        cluster: Cluster) -> None:
    b = cluster.start_agent("b", *check_roots(cluster))  # B answers about the test's files
    lock_files(cluster.base)
    st = cluster.base / "locker.json"
    with program(cluster, PY, LOCKER, "--dir", str(cluster.base), "--status", str(st)) as pid:
        status(pid, st)
        assert {("FLOCK", pid), ("POSIX", pid)} <= holders()
        res, v = check(cluster, pid, b)
        assert res.returncode == EXIT_PREFLIGHT, res.stderr
        fail = fails(v)
        assert set(fail) == {"locks"}, fail
        assert "same files" in str(fail["locks"]["detail"])
        assert "app.pid" in str(fail["locks"]["detail"])
        mig, _ = cluster.migrate(pid, b)
        assert mig.returncode == EXIT_PREFLIGHT, mig.stderr
        assert "locks" in mig.stderr
        assert alive(pid)
        assert not stopped(pid)
        assert {("FLOCK", pid), ("POSIX", pid)} <= holders()  # never let go
        assert b.migration_dirs() == []


def fill_hidden(agent: Agent, directory: Path) -> None:
    """The lock files in ``directory`` as ``agent`` sees it (its own tmpfs there)."""
    for name in FILES:
        subprocess.run(["nsenter", "-m", "-t", str(agent.proc.pid), "sh", "-c",
                        f'printf "locked\\n" > "{directory / name}"'], check=True)


MODES = ["cold", "postcopy", *(["precopy"] if UFFD_WP else [])]


@pytest.mark.parametrize("mode", MODES)
def test_a_daemon_holding_locks_and_a_deleted_file_moves_with_both(
        cluster: Cluster, mode: str) -> None:
    """Its pidfile flock and database lock are held again on B (CRIU's --file-locks), and
    its 3 MiB deleted scratch file reads back whole there (--ghost-limit: CRIU's own limit
    is 1 MiB)."""
    b = cluster.start_agent("b", hide_dir=True)
    fill_hidden(b, cluster.hidden_dir)
    lock_files(cluster.hidden_dir)
    st = cluster.base / "locker.json"
    with program(cluster, PY, LOCKER, "--dir", str(cluster.hidden_dir), "--status", str(st),
                 "--ghost-mib", "3") as pid:
        assert status(pid, st)["ghost_ok"] is True
        mig, report = cluster.migrate(pid, b, "--mode", mode, "--sync",
                                      str(cluster.hidden_dir))
        assert mig.returncode == 0, mig.stderr
        new = report["destination_pid"]
        assert isinstance(new, int)
        try:
            assert not alive(pid)
            assert {("FLOCK", new), ("POSIX", new)} <= holders()
            got = status(new, st)
            assert got["ghost_ok"] is True, got
            beats = int(got["beats"])  # type: ignore[call-overload]
            time.sleep(0.1)
            assert int(status(new, st)["beats"]) > beats  # type: ignore[call-overload]
        finally:
            os.kill(new, signal.SIGKILL)


def test_a_restore_waiting_for_a_lock_rolls_back_within_seconds(cluster: Cluster) -> None:
    """What the pre-flight does not see (here: skipped) the restore finds: CRIU waits for the
    lock the frozen source holds on the shared file; B kills the waiting tasks, the
    migration rolls back, and the workload runs on A with its locks, nothing left on B."""
    b = cluster.start_agent("b")
    lock_files(cluster.base)
    st = cluster.base / "locker.json"
    with program(cluster, PY, LOCKER, "--dir", str(cluster.base), "--status", str(st)) as pid:
        beats = int(status(pid, st)["beats"])  # type: ignore[call-overload]
        t0 = time.monotonic()
        mig, report = cluster.migrate(pid, b, "--test-skip-preflight")
        took = time.monotonic() - t0
        assert mig.returncode != 0, mig.stderr
        assert "rolled back" in mig.stderr, mig.stderr
        assert "waited for a lock on" in mig.stderr, mig.stderr
        assert str(cluster.base / "app.pid") in mig.stderr or \
            str(cluster.base / "app.db") in mig.stderr, mig.stderr
        assert took < 30, took  # not the restore's 300 s timeout
        assert report.get("result") == "rolled_back", report.get("result")
        assert alive(pid)
        assert not stopped(pid)
        assert {("FLOCK", pid), ("POSIX", pid)} <= holders()
        assert int(status(pid, st)["beats"]) > beats  # type: ignore[call-overload]
        assert wait_until(lambda: descendants(b.proc.pid) == []), descendants(b.proc.pid)
        assert not [lk for lk in parse_locks(Path("/proc/locks").read_text(), waiting=True)
                    if lk.pid != pid]


HOLDER = """
import fcntl, os, struct, sys
d = sys.argv[1]
kind = sys.argv[2]
f = open(os.path.join(d, sys.argv[3] if len(sys.argv) > 3 else kind), "a+")
if kind == "flock":
    fcntl.flock(f, fcntl.LOCK_EX)
elif kind == "posix":
    fcntl.lockf(f, fcntl.LOCK_EX)
elif kind == "ofd":
    fcntl.fcntl(f, fcntl.F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0))
elif kind in ("handed-on", "unrelated"):  # handed-on: a parent took it and left
    fcntl.flock(f, fcntl.LOCK_EX)
if kind == "handed-on":
    if os.fork():
        os._exit(0)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("kind", ["flock", "posix", "ofd", "handed-on", "none"])
def test_the_tree_s_own_locks_are_found_in_its_fdinfo(tmp_path: Path, kind: str) -> None:
    """What tells CRIU ``--file-locks`` (criu/client.py) and the pre-flight which files the
    tree holds locks on, read from the tree's fdinfo (host/filelocks.py), for each kind of
    lock, with a lock of another process on the same file not counted as the tree's."""
    from ferryman.host.filelocks import tree_holds_locks
    from ferryman.host.inspect import inspect_workload
    from ferryman.host.procfs import tree

    # another process's flock: on the file the tree opens without locking it ("none")
    other = subprocess.Popen([PY, "-c", HOLDER, str(tmp_path), "unrelated", "none"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder = subprocess.Popen([PY, "-c", HOLDER, str(tmp_path), kind], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None
        assert holder.stdout is not None
        assert other.stdout.readline().strip() == "ready"
        assert holder.stdout.readline().strip() == "ready"
        pid = holder.pid
        if kind == "handed-on":
            holder.wait(10)  # the parent took the lock and left; its child holds it now
            (pid,) = [int(p) for p in os.listdir("/proc") if p.isdigit()
                      and f"{tmp_path}".encode() in Path(f"/proc/{p}/cmdline").read_bytes()
                      and int(p) != other.pid]
        want = kind != "none"
        assert tree_holds_locks(tree(pid)) is want
        files = inspect_workload(pid).locked_files
        assert files == ((str(tmp_path / kind),) if want else ())
        assert ("FLOCK", other.pid) in holders()  # which /proc/locks does list
    finally:
        for p in (other, holder):
            p.kill()
            p.wait()
        if kind == "handed-on":
            with contextlib.suppress(ProcessLookupError, UnboundLocalError):
                os.kill(pid, signal.SIGKILL)
