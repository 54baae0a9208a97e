"""The SOURCE's freezer cgroup: found before the final dump, frozen by us at CRIU's
``pre-dump`` notification, thawed whatever happens.

We freeze the workload's own cgroup ourselves (tight polling; CRIU polls in 100 ms steps), so
that CRIU's (and runc's) start-up is not in the frozen window; without one, CRIU seizes the
tasks one by one with ptrace.
"""

from __future__ import annotations

import contextlib
import time

from ferryman.agent.role import ProgressFn
from ferryman.host import cgroups
from ferryman.migration.report import MigrationReport
from ferryman.targets.process import ProcessTree

__all__ = ["CgroupFreeze"]


class CgroupFreeze:
    def __init__(self, report: MigrationReport, progress: ProgressFn) -> None:
        self.report = report
        self.progress = progress
        self.freezer: cgroups.Freezer | None = None  # the cgroup we froze
        self.freeze_target: cgroups.Freezer | None = None  # to freeze at CRIU's pre-dump

    def find_freezer(self, tree: ProcessTree) -> str | None:
        """The workload's own cgroup, for CRIU to reuse frozen: we freeze it ourselves at
        CRIU's pre-dump notification. None: CRIU seizes the tasks one by one with ptrace."""
        self.freeze_target = cgroups.find_freezer(tree.pid, tree.pids)
        return None if self.freeze_target is None else str(self.freeze_target.path)

    def freeze_now(self) -> float | None:
        """Freeze the cgroup found; the time the freeze started (None: nothing to freeze)."""
        freezer, self.freeze_target = self.freeze_target, None
        if freezer is None:
            return None
        freeze_at = time.monotonic()
        took = cgroups.freeze(freezer)
        self.freezer = freezer
        self.report.freeze_method = "cgroup-v2" if freezer.v2 else "cgroup-v1"
        self.report.freeze_ms = took * 1000
        self.progress("FREEZING", f"cgroup {freezer.path} frozen in {took * 1000:.2f} ms")
        return freeze_at

    def thaw(self) -> None:
        """CRIU leaves a cgroup that was frozen before it frozen again: thaw it (idempotent)."""
        if self.freezer is not None:
            with contextlib.suppress(OSError):
                cgroups.thaw(self.freezer)
            self.freezer = None
