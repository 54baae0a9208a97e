"""The controller's guard (agent/lockguard.py) as a process: it starts yielding the CPUs to
the migration, takes the controller's priority back once it runs, and ends with it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ferryman.agent import lockguard


def _nice(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])  # field 19: nice


def test_the_guard_takes_the_controller_s_priority_and_ends_with_it(tmp_path: Path) -> None:
    controller = subprocess.Popen(["nice", "-n", "3", "sleep", "60"])
    guard = None
    try:
        deadline = time.monotonic() + 10
        while _nice(controller.pid) != 3:
            assert time.monotonic() < deadline, "nice did not start sleep"
            time.sleep(0.01)
        guard = lockguard.start(controller.pid, tmp_path / "migration")
        assert guard is not None
        while b"ferryman.agent.lockguard" not in Path(
                f"/proc/{guard.pid}/cmdline").read_bytes() or _nice(guard.pid) != 3:
            assert time.monotonic() < deadline, f"the guard runs at nice {_nice(guard.pid)}"
            time.sleep(0.01)
        assert guard.poll() is None, "the guard ended before its controller"
        controller.kill()
        controller.wait()
        assert guard.wait(10) == 0  # its clean-up found nothing to clean up
    finally:
        for p in (controller, guard):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
