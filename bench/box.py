"""One benchmark run's runc container on node A, and the B side that receives it.

Its own module so that bench/runcbox.py (the scenario) and bench/baseline_runc.py (runc's
commands by hand) both use it without importing each other.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.bundle import Container, cgroup_jail_argv, remove_cgroup_jail

from bench.proc import REPO, stop


@dataclass
class Box:
    """One run's container on A and the B side that receives it."""

    id: str
    bundle: Path  # under the directory B does not see
    root_a: Path  # runc --root on A and on B
    root_b: Path
    jail: str  # B's cgroups (tests/support/bundle.py)
    holder: subprocess.Popen[bytes]  # sleeps in B's mount namespace

    def on_b(self, *cmd: str) -> list[str]:
        """``cmd`` on B: B's network and mount namespaces, B's cgroups, from the repo root."""
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", f"--wd={REPO}", "--",
                *cgroup_jail_argv(self.jail), *cmd]

    def from_a(self, path: Path) -> str:
        """``path`` as seen on A, from inside B (this host's mount namespace via /proc)."""
        return f"/proc/{os.getpid()}/root{path}"

    def delete(self) -> None:
        for root in (self.root_a, self.root_b):
            Container(self.id, root, self.bundle).delete()
        stop(self.holder)
        time.sleep(0.1)  # the jail's cgroups empty once the holder has gone
        remove_cgroup_jail(self.jail)
