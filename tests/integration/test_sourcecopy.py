"""The guard settles a source copy its killed controller left stopped (host/sourcecopy.py)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.host import procfs, sourcecopy


@pytest.fixture
def stopped() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    proc.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while procfs.state(proc.pid) != "T":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_no_commit_sent_continues_the_source_copy(tmp_path: Path,
                                                  stopped: subprocess.Popen[bytes]) -> None:
    sourcecopy.record_stopped(tmp_path, [stopped.pid])
    assert sourcecopy.settle(tmp_path) == "continued"
    assert procfs.state(stopped.pid) in ("S", "R")
    assert not (tmp_path / sourcecopy.STOPPED).exists()


def test_commit_sent_kills_the_source_copy(tmp_path: Path,
                                           stopped: subprocess.Popen[bytes]) -> None:
    sourcecopy.record_stopped(tmp_path, [stopped.pid])
    sourcecopy.mark_commit(tmp_path)
    assert sourcecopy.settle(tmp_path) == "killed"
    assert stopped.wait(5) == -signal.SIGKILL


def test_a_controller_that_ended_by_itself_leaves_nothing_to_settle(
        tmp_path: Path, stopped: subprocess.Popen[bytes]) -> None:
    sourcecopy.record_stopped(tmp_path, [stopped.pid])
    sourcecopy.mark_commit(tmp_path)
    sourcecopy.clear(tmp_path)
    assert sourcecopy.settle(tmp_path) is None
    assert procfs.state(stopped.pid) == "T"


def test_a_reused_pid_is_never_touched(tmp_path: Path,
                                       stopped: subprocess.Popen[bytes]) -> None:
    start = procfs.identity(stopped.pid).start_time
    (tmp_path / sourcecopy.STOPPED).write_text(f"{stopped.pid} {start + 1}\n")
    sourcecopy.mark_commit(tmp_path)
    sourcecopy.settle(tmp_path)
    assert procfs.state(stopped.pid) == "T"
