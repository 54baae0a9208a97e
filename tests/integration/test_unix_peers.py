"""A daemon logging through syslog moves as a hand-typed ``criu --ext-unix-sk`` moves it: its
datagram socket connected to the log socket another process owns (journald's /dev/log) is
connected to the same name again on the destination. Real agents, criu and namespace nodes.

A path is the same socket for both nodes (one filesystem); an abstract name is each network
namespace's own, as /dev/log is each machine's: the destination must have one bound, which
the pre-flight checks before anything is frozen.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import PY, Cluster
from tests.integration.test_check import EXIT_PREFLIGHT, UFFD_WP, check, fails, program, stopped
from tests.support.workloads import alive

SUPPORT = Path(__file__).resolve().parents[1] / "support"
LOGGER = str(SUPPORT / "syslog_workload.py")
SINK = str(SUPPORT / "log_sink.py")
MODES = ["cold", "postcopy", *(["precopy"] if UFFD_WP else [])]


@contextlib.contextmanager
def sink(cluster: Cluster, node: str, address: str, out: Path) -> Iterator[None]:
    """A log socket bound at ``address`` by a process in ``node``, writing to ``out``."""
    proc = cluster.topology[node].popen(PY, SINK, "--address", address, "--out", str(out),
                                        stdin=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: out.exists() and "ready" in out.read_text()), "no sink"
        yield
    finally:
        proc.kill()
        proc.wait()


def wait_for(what: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not what():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def beats(out: Path) -> list[int]:
    return [int(n) for n in re.findall(r"beat (\d+)", out.read_text())]


@pytest.mark.parametrize("mode", MODES)
def test_a_daemon_logging_to_a_log_socket_moves_and_logs_on(cluster: Cluster,
                                                            mode: str) -> None:
    b = cluster.start_agent("b")
    address, out = str(cluster.base / "log.sock"), cluster.base / "log.txt"
    with sink(cluster, "a", address, out), \
            program(cluster, PY, LOGGER, "--address", address) as pid:
        assert wait_for(lambda: len(beats(out)) >= 3)
        mig, report = cluster.migrate(pid, b, "--mode", mode)
        assert mig.returncode == 0, mig.stderr
        new = report["destination_pid"]
        assert isinstance(new, int)
        try:
            assert not alive(pid)
            before = beats(out)[-1]
            assert wait_for(lambda: beats(out)[-1] >= before + 3), beats(out)[-5:]
            got = beats(out)
            assert got == list(range(1, len(got) + 1))  # counting on: its memory moved
        finally:
            os.kill(new, signal.SIGKILL)


def test_a_log_socket_the_destination_lacks_is_refused_then_found(cluster: Cluster) -> None:
    """An abstract name bound only in A's namespace: the pre-flight names it and nothing is
    frozen. Once B has a log socket of its own there, the daemon moves and logs to B's."""
    b = cluster.start_agent("b")
    address = f"@ferryman-test-log-{uuid.uuid4().hex[:8]}"
    out_a, out_b = cluster.base / "log-a.txt", cluster.base / "log-b.txt"
    with sink(cluster, "a", address, out_a), \
            program(cluster, PY, LOGGER, "--address", address) as pid:
        assert wait_for(lambda: len(beats(out_a)) >= 3)
        res, v = check(cluster, pid, b)
        assert res.returncode == EXIT_PREFLIGHT, res.stderr
        fail = fails(v)
        assert set(fail) == {"unix"}, fail
        assert f"{address}: nothing is bound to it" in str(fail["unix"]["detail"])
        mig, _ = cluster.migrate(pid, b)
        assert mig.returncode == EXIT_PREFLIGHT, mig.stderr
        assert address in mig.stderr, mig.stderr
        assert alive(pid)
        assert not stopped(pid)
        seen = beats(out_a)[-1]
        assert wait_for(lambda: beats(out_a)[-1] > seen)  # still logging on A
        assert b.migration_dirs() == []
        with sink(cluster, "b", address, out_b):
            res, v = check(cluster, pid, b)
            assert "unix" not in fails(v), fails(v)
            mig, report = cluster.migrate(pid, b)
            assert mig.returncode == 0, mig.stderr
            new = report["destination_pid"]
            assert isinstance(new, int)
            try:
                assert wait_for(lambda: out_b.exists() and len(beats(out_b)) >= 3)
                assert beats(out_b)[0] > beats(out_a)[-1]  # B's socket, its memory kept
            finally:
                os.kill(new, signal.SIGKILL)


STREAM_SINK = ("import socket, sys\n"
               "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
               "s.bind(sys.argv[1]); s.listen(4); open(sys.argv[2], 'w').write('ready')\n"
               "kept = []\n"
               "while True: kept.append(s.accept()[0])\n")
STREAM_WRITER = ("import os, socket, sys, time\n"
                 "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                 "s.connect(sys.argv[1]); os.dup2(s.fileno(), 1)\n"
                 "while True: print('line', flush=True); time.sleep(0.05)\n")


def test_output_streamed_to_a_process_outside_the_tree_is_refused_with_a_way_out(
        cluster: Cluster) -> None:
    """A systemd service's stdout is a stream to journald: no CRIU option moves one end of a
    stream connection. The pre-flight says so with CRIU's words (the peer's name) and a fix
    that can work, before anything is frozen."""
    b = cluster.start_agent("b")
    path, ready = str(cluster.base / "journal.sock"), cluster.base / "journal.ready"
    server = cluster.topology["a"].popen(PY, "-c", STREAM_SINK, path, str(ready),
                                         stdin=subprocess.DEVNULL)
    try:
        assert wait_for(ready.exists)
        with program(cluster, PY, "-c", STREAM_WRITER, path) as pid:
            res, v = check(cluster, pid, b)
            assert res.returncode == EXIT_PREFLIGHT, res.stderr
            dump = fails(v)["dump"]
            assert "half of stream unix connection" in str(dump["detail"]), dump
            assert path in str(dump["detail"]), dump
            assert "StandardOutput=" in str(dump["fix"]), dump
            assert alive(pid)
            assert not stopped(pid)
    finally:
        server.kill()
        server.wait()
