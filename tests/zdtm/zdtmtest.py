"""One run of a zdtm static test: start it on a node, stop it wherever it runs, read its result.

As zdtm.py does it: the test's command line is the one its Makefile's ``NAME.pid`` rule runs
(``--pidfile``, ``--outfile`` and, per test, ``--filename``/``--dirname``…); the test
daemonizes, waits for SIGTERM, then checks what it set up and writes PASS or FAIL to its
``.out`` file (``.out.inprogress`` until it exits). It runs in PID, IPC and UTS namespaces of
its own (tests/zdtm/launch.py); the tree to migrate is rooted at their init.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.support.workloads import Workload

LAUNCH = Path(__file__).resolve().parent / "launch.py"
PIDFILE = "init.pid"


class Starter(Protocol):
    """Where a test starts: a namespace node (tests.support.netns.Node), or the local host
    (a QEMU guest, tests/vm/scenarios/zdtm_guest.py)."""

    def popen(self, *cmd: str, **kw: object) -> subprocess.Popen[bytes]: ...


class ZdtmError(Exception):
    """A test did not start, or did not stop."""


@functools.cache
def command(static_dir: Path, name: str) -> tuple[str, ...]:
    """The test's command line, from its Makefile rule (``make -n NAME.pid``)."""
    res = subprocess.run(["make", "-s", "-n", "-C", str(static_dir), f"{name}.pid"],
                         capture_output=True, text=True, check=False)
    prefix = f"./{name} "
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(prefix)]
    if res.returncode != 0 or len(lines) != 1:
        raise ZdtmError(f"no command for {name} in {static_dir}/Makefile: {res.stderr.strip()}")
    return (str(static_dir / name), *lines[0].split()[1:])


def _state(pid: int) -> str | None:
    """The process's state letter, None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return None


def _gone(pid: int) -> bool:
    return _state(pid) in (None, "Z", "X")


def kill_tree(pid: int | None) -> None:
    """SIGKILL a test's init: the kernel kills everything in its PID namespace."""
    if pid is not None and not _gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class ZdtmRun:
    """One test in its run directory (on storage both nodes see). ``argv``: its command line
    when known already (``command`` needs make, which the QEMU guests lack)."""

    static_dir: Path
    name: str
    run_dir: Path
    argv: tuple[str, ...] | None = None

    @property
    def out(self) -> Path:
        return self.run_dir / f"{self.name}.out"

    def start(self, node: Starter, timeout: float = 30.0) -> Workload:
        """Start the test on ``node``; returns once the test runs, with its init's PID."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        argv = self.argv or command(self.static_dir, self.name)
        err = self.run_dir / "launch.stderr"
        with err.open("wb") as errf:
            proc = node.popen(sys.executable, str(LAUNCH), "--pidfile", PIDFILE, "--", *argv,
                              cwd=self.run_dir, stdin=subprocess.DEVNULL, stdout=errf,
                              stderr=errf)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pidfile = self.run_dir / PIDFILE
        if proc.returncode != 0 or not pidfile.exists():
            why = (self.first_err(self.out)
                   or self.last_line(self.run_dir / (self.name + ".out.inprogress"))
                   or self.last_line(err))
            raise ZdtmError(f"{self.name} did not start: {why}")
        return Workload(pid=int(pidfile.read_text()), status_path=self.out, launcher=proc)

    def stop(self, pid: int, timeout: float = 30.0) -> str | None:
        """SIGTERM the test's init at ``pid`` (it passes the signal to the test) and wait for
        the verdict: None when the test says PASS, else why not."""
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not self.out.exists() and not _gone(pid):
            if time.monotonic() > deadline:
                kill_tree(pid)
                return f"no result {timeout:.0f} s after SIGTERM"
            time.sleep(0.01)
        while not self.out.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # the init may go first; the test renames its .out as it exits
        if not self.out.exists():
            return "the test died without a result: " + self.last_line(
                self.run_dir / (self.name + ".out.inprogress"))
        words = self.out.read_text(errors="replace").split()
        return None if "PASS" in words else "the test says: " + self.last_line(self.out)

    @staticmethod
    def first_err(path: Path) -> str:
        """The test's first ``FAIL:`` or ``ERR:`` line in ``path``, from that word on (no
        timestamp, no PID)."""
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        for line in lines:
            for word in ("FAIL:", "ERR:"):
                if word in line:
                    return line[line.index(word):].strip()
        return ""

    @staticmethod
    def last_line(path: Path) -> str:
        try:
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        except FileNotFoundError:
            return ""
        return lines[-1].strip() if lines else ""
