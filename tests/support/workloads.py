"""Start and inspect the test workload (tests/support/workload.py) as a real process tree."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.netns import Node

WORKLOAD = Path(__file__).with_name("workload.py")
FIFO_WORKLOAD = Path(__file__).with_name("fifo_workload.py")
UNIX_WORKLOAD = Path(__file__).with_name("unix_workload.py")


def children(pid: int) -> list[int]:
    out: list[int] = []
    # a task that exits meanwhile: ENOENT, or ESRCH once its directory was listed
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
                out += [int(c) for c in text.split()]
    return out


def kill_launched(pid: int, launcher: subprocess.Popen[bytes]) -> None:
    """SIGKILL a program (``pid``, 0: none found) and the launcher that started it; reap it."""
    for p in {pid, launcher.pid} - {0}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    launcher.wait(10)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def ns_pid(pid: int) -> int:
    """``pid`` as its own (innermost) PID namespace sees it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise LookupError(pid)


def start_time(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[19])


@dataclass
class Workload:
    pid: int  # host-view PID of the workload's root (init of its own PID namespace)
    status_path: Path
    launcher: subprocess.Popen[bytes]

    def status(self, pid: int | None = None, timeout: float = 60.0, path: Path | None = None
               ) -> dict[str, object]:
        """Ask the workload (SIGUSR1) to verify its memory; returns its fresh status."""
        target = pid if pid is not None else self.pid
        path = path or self.status_path
        before = path.stat().st_mtime_ns if path.exists() else 0
        os.kill(target, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_mtime_ns != before:
                with contextlib.suppress(json.JSONDecodeError):
                    data: dict[str, object] = json.loads(path.read_text())
                    if data.get("phase") == "running":
                        return data
            time.sleep(0.02)
        raise TimeoutError(f"workload {target} wrote no status to {path}")

    def runs_intact(self, pid: int | None = None, *, mib: int | None = None) -> None:
        """Every page verified (all ``mib`` of them, if given) and its heartbeat advancing:
        the copy at ``pid`` (default the source's) runs whole."""
        st = self.status(pid)
        assert st["bad_pages"] == 0, st
        if mib is not None:
            assert st["pages"] == mib * 256, st
        beats = int(st["beats"])  # type: ignore[call-overload]
        time.sleep(0.3)
        assert int(self.status(pid)["beats"]) > beats  # type: ignore[call-overload]

    def reset_gap(self, pid: int | None = None) -> None:
        os.kill(pid if pid is not None else self.pid, signal.SIGUSR2)

    def kill(self, pid: int | None = None) -> None:
        for p in {self.pid, *([pid] if pid else [])}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.launcher.wait(5)


def start_workload(node: Node, status_path: Path, *, mib: int = 64, seed: str = "ferryman",
                   dirty_rate: float = 0.0, children_: int = 0, heartbeat_ms: float = 1.0,
                   hold_file: str | None = None, beat_file: str | None = None,
                   log_file: str | None = None, write_file: str | None = None,
                   churn: int = 0, memory: str = "heap", fill: str = "pattern",
                   python: str = sys.executable, timeout: float = 120.0) -> Workload:
    """Run the workload in ``node`` in its own PID namespace; wait until its memory is ready."""
    argv = ["unshare", "-p", "-f", "setsid", python, str(WORKLOAD), "--mib", str(mib),
            "--seed", seed, "--status", str(status_path), "--dirty-rate", str(dirty_rate),
            "--heartbeat-ms", str(heartbeat_ms)]
    if children_:
        argv += ["--children", str(children_)]
    if beat_file:
        argv += ["--beat-file", beat_file]
    if hold_file:
        argv += ["--hold-file", hold_file]
    if log_file:
        argv += ["--log-file", log_file]
    if write_file:
        argv += ["--write-file", write_file]
    if churn:
        argv += ["--churn", str(churn)]
    if memory != "heap":
        argv += ["--memory", memory]
    if fill != "pattern":
        argv += ["--fill", fill]
    return _launch(node, argv, status_path, timeout)


def start_fifo_workload(node: Node, status_path: Path, fifo: Path, *, fill: int,
                        pipe_size: int = 0, split: bool = False, seed: str = "fifo",
                        python: str = sys.executable, timeout: float = 60.0) -> Workload:
    """Run tests/support/fifo_workload.py in ``node`` in its own PID namespace: it makes the
    FIFO ``fifo`` and leaves ``fill`` bytes unread in it (a ``pipe_size`` FIFO if non-zero;
    ``split``: written by a child, read by the root)."""
    argv = ["unshare", "-p", "-f", "setsid", python, str(FIFO_WORKLOAD), "--fifo", str(fifo),
            "--bytes", str(fill), "--pipe-size", str(pipe_size), "--seed", seed,
            "--status", str(status_path), *(["--split"] if split else [])]
    return _launch(node, argv, status_path, timeout)


def start_unix_workload(node: Node, status_path: Path, path: Path, *, hold_file: str = "",
                        python: str = sys.executable, timeout: float = 60.0) -> Workload:
    """Run tests/support/unix_workload.py in ``node`` in its own PID namespace: a datagram
    server bound to ``path`` (keeping ``hold_file`` open if given)."""
    argv = ["unshare", "-p", "-f", "setsid", python, str(UNIX_WORKLOAD), "--path", str(path),
            "--status", str(status_path), "--hold-file", hold_file]
    return _launch(node, argv, status_path, timeout)


def _launch(node: Node, argv: list[str], status_path: Path, timeout: float) -> Workload:
    """Start ``argv`` (unshare ... PROG) in ``node``; wait for PROG's first status file."""
    launcher = node.popen(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    pid = 0
    while time.monotonic() < deadline:
        kids = children(launcher.pid)
        if kids:
            pid = kids[0]
        if pid and status_path.exists():
            break
        if launcher.poll() is not None:
            raise RuntimeError(f"workload launcher exited with {launcher.returncode}")
        time.sleep(0.05)
    else:
        launcher.kill()
        raise TimeoutError("workload did not become ready")
    return Workload(pid=pid, status_path=status_path, launcher=launcher)
