"""Process helpers for the benchmark: timed commands, progress lines, the final process sweep."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
# The command an operator types, installed beside this interpreter (setup's editable install):
# what ``ferryman migrate`` costs is timed through it, not through ``python -m`` (runpy: ~4 ms)
FERRYMAN = str(Path(PY).with_name("ferryman"))


class BenchError(Exception):
    """A benchmark run failed; the message is recorded in the results."""


def say(msg: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Timed:
    argv: list[str]
    returncode: int
    ms: float
    stdout: str
    stderr: str

    def check(self, what: str, log: Path | None = None) -> Timed:
        """BenchError unless it exited 0: CRIU's first error (from ``log``, else from the
        output: criu run without -o logs to stderr), else the output's last line."""
        if self.returncode != 0:
            from ferryman.criu.logs import first_error_in

            detail = ((_first_error(log) if log is not None else "")
                      or first_error_in(self.stderr.splitlines()) or _last_line(self.stderr)
                      or _last_line(self.stdout))
            if log is not None and log.exists():
                detail = f"{detail} (log {log})"
            raise BenchError(f"{what} exited with {self.returncode}: {detail}")
        return self


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _first_error(log: Path) -> str:
    from ferryman.criu.logs import first_error

    with contextlib.suppress(OSError):
        return first_error(log) or ""
    return ""


def run_timed(argv: list[str], timeout: float, output: Path | None = None) -> Timed:
    """Run ``argv`` to completion (from the repo root) and time it on the monotonic clock.

    ``output``: its stdout and stderr go to that file instead of pipes (a command whose
    children keep them open, as ``runc restore -d`` hands its stdio to the container)."""
    t0 = time.monotonic()
    try:
        if output is None:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                 cwd=REPO, check=False)
            out, err = res.stdout, res.stderr
        else:
            with output.open("ab") as fh:
                res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh,
                                     timeout=timeout, cwd=REPO, check=False)
            out, err = "", output.read_text(errors="replace")
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{argv[0]} … timed out after {timeout:.0f} s: {' '.join(argv)}") from exc
    return Timed(argv, res.returncode, (time.monotonic() - t0) * 1000, out, err)


def err_tail(path: Path) -> str:
    """The last error line of a log (else its last line); "" when unreadable."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or [""])[-1]


def wait_ready(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], err: Path,
              timeout: float) -> None:
    """Poll ``ready()`` every 2 ms until true; fail if ``proc`` exits first or on timeout."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} before it was ready: "
                             f"{err_tail(err)} (log {err})")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not ready after {timeout:.0f} s (log {err})")
        time.sleep(0.002)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a child we started, then kill it if it does not go."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    """Wait until killed processes have left /proc (a 4 GiB process takes a while to free
    its memory, which the next run's workload needs)."""
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for PID {pid}")


def pids_mentioning(marker: str) -> list[int]:
    """PIDs whose command line mentions ``marker`` (our unique temp dir), except ourselves."""
    found: list[int] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def describe(pid: int) -> str:
    """State and the first words of ``pid``'s command line (for the cleanup log)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "(gone)"
    state = stat[stat.rindex(")") + 2]
    words = " ".join(a.decode(errors="replace") for a in argv[:6] if a)
    return f"[{state}] {words[:200]}"


def sweep(marker: str) -> list[int]:
    """Last line of defence: SIGKILL every process whose argv names our temp dir.

    Workloads, restored workloads (reparented to init), agents and criu helpers all carry a
    path under the run's temp dir in their argv, so nothing of ours survives the benchmark.
    """
    killed: list[int] = []
    for _ in range(3):
        pids = pids_mentioning(marker)
        if not pids:
            break
        for pid in pids:
            say(f"cleanup: killing leftover PID {pid}: {describe(pid)}")
            kill_pid(pid)
        killed += pids
        time.sleep(0.2)
    return sorted(set(killed))


def timens_monotonic_ms(pid: int) -> float:
    """CLOCK_MONOTONIC offset of ``pid``'s time namespace, in ms (0 in the host's).

    ``criu restore`` puts the restored tree into a new time namespace whose monotonic clock
    continues from the moment the dump read it (near the end of the dump). A workload timing
    its heartbeat with CLOCK_MONOTONIC therefore does not see the time between that moment
    and the restore: the change of this offset across a migration is exactly that time.
    """
    for line in Path(f"/proc/{pid}/timens_offsets").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in ("monotonic", "1"):  # name, or clock id 1 on old kernels
            return (int(parts[1]) + int(parts[2]) / 1e9) * 1000
    raise BenchError(f"no monotonic offset in /proc/{pid}/timens_offsets")


def prune_images(root: Path) -> int:
    """Delete CRIU's image files (``*.img``) below ``root``, keeping the logs; bytes freed.

    A 4 GiB cold run leaves ~4 GiB of pages on disk per tool: kept until the end, S1's grid
    would fill the disk."""
    freed = 0
    for path in root.rglob("*.img"):
        with contextlib.suppress(OSError):
            size = path.stat().st_size
            path.unlink()
            freed += size
    return freed
