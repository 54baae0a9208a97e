"""What moves, as the SOURCE sees it: one protocol for a process tree, a runc container and
a Podman container, so that the SOURCE role asks the workload instead of branching on its kind.

A workload owns:

* its **identity**, resolved once when it is opened (:attr:`Workload.tree`: PID and start
  time of its root, the container's init for a container) and never re-derived from an int;
* its **pre-flight facts**: whether the process tree pre-flight applies
  (``process_preflight``: /proc inspection, the CRIU dry run; a container is checked by runc
  and the destination's Plan instead), and how the Plan describes it (:meth:`planned_target`,
  the JSON of ``Plan.target``, "" for a process tree);
* how it is **synced**: a runc container's files go by rsync while it runs (``presyncs``,
  :meth:`sync`) and again while it is frozen (``syncs_frozen``, :meth:`final_sync`; a Podman
  container's rootfs changes are tarred then), a process tree's never (``synced`` holds the
  timings for the report);
* how it is **dumped** (the ``Dumper`` the role is given when it is opened: CRIU itself for a
  process tree, ``runc checkpoint`` for a container, agent/container.py and agent/podman.py)
  and whether the data its restore takes from this frozen tree stays on the host
  (``keeps_shared``: FIFO data and unix socket names, a process tree only);
* what of it stays here once it is **gone** from this node: :meth:`after_commit` (Podman's
  record, a lazy dump's runc record), :meth:`after_loss` (post-copy lost it), and
  :meth:`forget_argv`, the command the controller's guard runs when the controller died
  after the commit (agent/lockguard.py).

The restore side stays the DESTINATION's (agent/container.py ``DestinationContainer``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ferryman.pki import NodeCredentials
from ferryman.targets.process import ProcessTree

__all__ = ["ProcessWorkload", "Workload"]


class Workload(Protocol):
    kind: str  # "process", "runc", "podman": for the report and the progress lines
    tree: ProcessTree  # resolved once
    process_preflight: bool
    presyncs: bool
    syncs_frozen: bool
    keeps_shared: bool
    presynced: bool
    synced: dict[str, float]  # the syncs' timings, for the report

    def planned_target(self) -> str:
        """``Plan.target``: the JSON the destination prepares from ("" for a process tree)."""

    async def sync(self, phase: int, host: str, port: int, creds: NodeCredentials) -> str:
        """Phase 1 (while it runs) of the file sync; a progress line."""

    async def final_sync(self, host: str, port: int, creds: NodeCredentials) -> str:
        """The last file sync, while frozen; a progress line."""

    async def after_commit(self) -> None:
        """The migration committed (the source copy is gone): what else goes here, e.g.
        Podman's record of the container."""

    async def after_loss(self) -> None:
        """Post-copy lost the workload (no copy runs): what of it goes here."""

    def forget_argv(self) -> list[str]:
        """What the guard runs here after a commit when the controller died ([]: nothing)."""


@dataclass
class ProcessWorkload:
    """A process tree by its root: nothing to sync, the process pre-flight applies."""

    tree: ProcessTree
    kind: str = "process"
    process_preflight: bool = True
    presyncs: bool = False
    syncs_frozen: bool = False
    keeps_shared: bool = True
    presynced: bool = False
    synced: dict[str, float] = field(default_factory=dict)

    def planned_target(self) -> str:
        return ""

    async def sync(self, phase: int, host: str, port: int, creds: NodeCredentials) -> str:
        raise TypeError("a process tree has no files to sync")

    async def final_sync(self, host: str, port: int, creds: NodeCredentials) -> str:
        raise TypeError("a process tree has no files to sync")

    async def after_commit(self) -> None:
        return None

    async def after_loss(self) -> None:
        return None

    def forget_argv(self) -> list[str]:
        return []
