"""The process-tree target: identify, resume and kill a tree of processes by its root PID."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from ferryman.errors import NoSuchProcess
from ferryman.host import procfs
from ferryman.host.procfs import ProcessIdentity


@dataclass(frozen=True, slots=True)
class ProcessTree:
    root: ProcessIdentity
    proc: Path = procfs.PROC

    @classmethod
    def of(cls, pid: int, proc: Path = procfs.PROC) -> ProcessTree:
        """The tree rooted at ``pid``; raises NoSuchProcess."""
        return cls(procfs.identity(pid, proc), proc)

    @property
    def pid(self) -> int:
        return self.root.pid

    def alive(self) -> bool:
        return procfs.is_alive(self.root, self.proc)

    def pids(self) -> list[int]:
        return procfs.tree(self.pid, self.proc) if self.alive() else []

    def rss_bytes(self) -> int:
        return procfs.tree_rss_bytes(self.pid, self.proc)

    def own_pid_namespace(self) -> bool:
        """True when the root is the init of a PID namespace of its own."""
        try:
            with open(self.proc / str(self.pid) / "status") as fh:
                for line in fh:
                    if line.startswith("NSpid:"):
                        ids = line.split()[1:]
                        return len(ids) > 1 and ids[-1] == "1"
        except procfs.GONE:
            return False
        return False

    def resume(self, keep_stopped: Collection[int] = (),
               only: Collection[int] | None = None) -> int:
        """SIGCONT every process of a tree CRIU left stopped (or those of ``only``), except
        those whose PID in their own namespace is in ``keep_stopped`` (they were stopped
        when dumped); returns how many it continued."""
        n = 0
        for p in self.pids() if only is None else only:
            with contextlib.suppress(ProcessLookupError, NoSuchProcess):
                if keep_stopped and procfs.ns_pid(p, self.proc) in keep_stopped:
                    continue
                os.kill(p, signal.SIGCONT)
                n += 1
        return n

    def kill(self, timeout: float = 5.0) -> None:
        """SIGKILL the whole tree (a PID-namespace init ignores SIGTERM) and wait until gone."""
        for p in reversed(self.pids()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
