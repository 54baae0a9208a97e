"""After the controller is gone: remove the network lock its final dump left here, if any.

CRIU locks a dumped workload's TCP connections with an nftables table (host/netlock.py). A
``ferryman migrate`` that is killed or crashes mid-migration takes CRIU with it (CRIU dies with
its parent, and the workload resumes here), but nothing removes that table: the resumed
workload's connections stay cut off on this node for good. So the controller starts this
guard, detached, before its final dump; the guard sleeps until the controller's process has
exited, whatever the way, and then removes the tables of the CRIU runs in ``WORKDIR`` (the
run ids from ``inventory.img`` and from CRIU's logs, should a dump never have finished).
It settles the source tasks a controller killed at the commit left stopped
(host/sourcecopy.py), and removes the image files the dump left in ``WORKDIR`` (the
controller removes them when it ends; a killed one cannot): none of them can be used once
the controller is gone.
After a migration that ended normally there is nothing left to remove.

The guard starts with each migration, beside its pre-flight, on the same CPUs: until the
controller exits it has imported nothing but what waiting takes (a fresh interpreter that
imported the clean-up's modules ran ~75 ms of CPU, measured, while the pre-flight ran); the
clean-up's modules are imported once there is something to clean up. Its interpreter starts
at nice 19 (the pre-flight's connection set up 5 ms later beside it, median of 7 runs each
way) and takes the controller's priority back as soon as it runs.

``python -m ferryman.agent.lockguard PID WORKDIR``
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from pathlib import Path

TYPE_CHECKING = False  # the guard's own start imports nothing it does not wait with
if TYPE_CHECKING:
    import subprocess

_RUN_ID = r"CRIU run id = ([0-9a-f-]{8,})"


def run_id_from_log(text: str) -> str | None:
    """The run id CRIU logs first (``CRIU run id = …``), or None."""
    import re

    m = re.search(_RUN_ID, text)
    return m.group(1) if m else None


def run_ids(workdir: Path) -> set[str]:
    """The CRIU runs of this migration here: the final dump's inventory, and every CRIU log
    in ``workdir`` (a dump that never finished, the pre-flight's dry run)."""
    from ferryman.host import netlock

    found = {r for r in [netlock.run_id(workdir)] if r}
    for log in sorted(workdir.rglob("*.log")):
        with contextlib.suppress(OSError):
            with log.open(errors="replace") as fh:
                run = run_id_from_log(fh.read(4096))
            if run:
                found.add(run)
    return found


def wait_exit(pid: int) -> None:
    """Until ``pid`` has exited (pidfd: no polling, no PID reuse race)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def start(pid: int, workdir: Path) -> subprocess.Popen[bytes] | None:
    """The guard for controller ``pid``'s dump in ``workdir``, detached; None if it cannot
    start (the caller goes on: this is a safety net)."""
    import subprocess

    argv = [sys.executable, "-m", "ferryman.agent.lockguard", str(pid), str(workdir)]
    for niced in (["nice", "-n", "19", *argv], argv):  # coreutils' nice, else as it is
        try:
            return subprocess.Popen(niced, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            continue
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit():
        print("usage: python -m ferryman.agent.lockguard PID WORKDIR", file=sys.stderr)
        return 2
    pid, workdir = int(argv[0]), Path(argv[1])
    with contextlib.suppress(OSError):  # the controller's priority (root may raise its own)
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, pid))
    wait_exit(pid)
    time.sleep(0.2)  # CRIU, its child, goes a moment later
    from ferryman.agent.files import remove_images
    from ferryman.criu.stats import DUMP_STATS
    from ferryman.host import netlock, portguard, sourcecopy

    netlock.remove(netlock.tables_of(sorted(run_ids(workdir))))
    portguard.remove_recorded(workdir)  # the lazy page server's guard
    sourcecopy.settle(workdir)
    if workdir.is_dir():
        remove_images(workdir, keep=(DUMP_STATS,))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
