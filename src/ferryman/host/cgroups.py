"""Freezing a workload's own cgroup ourselves, with tight polling.

CRIU's ``--freeze-cgroup`` polls the freezer every 100 ms: a fixed 100 ms of downtime. When the
workload lives in a freezer cgroup of its own (cgroup v1 ``freezer`` or v2 ``cgroup.freeze``)
we freeze it first and poll every 0.2 ms; CRIU then finds it frozen at once. Pure parsing is
separated from the file system so it can be tested.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ferryman.errors import FerrymanError
from ferryman.host import procfs
from ferryman.host.procfs import PROC

POLL_S = 0.0002
SNAPSHOT_TRIES = 20  # find_freezer: a tree that forks or reaps between two reads


@dataclass(frozen=True, slots=True)
class Freezer:
    path: Path  # the cgroup directory
    v2: bool

    @property
    def control(self) -> Path:
        return self.path / ("cgroup.freeze" if self.v2 else "freezer.state")


def parse_cgroup_file(text: str, controller: str = "freezer") -> tuple[str | None, str | None]:
    """(path in the v1 hierarchy of ``controller``, v2 path) from /proc/PID/cgroup."""
    v1 = v2 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "" and parts[0] == "0":
            v2 = path
        elif controller in controllers.split(","):
            v1 = path
    return v1, v2


def parse_mountinfo(text: str, controller: str = "freezer") -> tuple[str | None, str | None]:
    """(mount point of the v1 hierarchy of ``controller``, cgroup2 mount point) from
    /proc/self/mountinfo."""
    v1 = v2 = None
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, options = rfields[0], rfields[2].split(",")
        if fstype == "cgroup" and controller in options:
            v1 = fields[4]
        elif fstype == "cgroup2" and v2 is None:
            v2 = fields[4]
    return v1, v2


def find_freezer(pid: int, tree_pids: Callable[[], Iterable[int]], proc: Path = PROC,
                 tries: int = SNAPSHOT_TRIES) -> Freezer | None:
    """The workload's own freezer cgroup: one holding exactly the tree's processes.

    ``tree_pids`` reads the tree anew. The cgroup's list and the tree are two reads: a child
    forked or reaped between them (a shell running ``sleep`` in a loop) makes them differ for
    an instant, so a mismatch is read again, ``tries`` times, 1 ms apart; a bystander in the
    cgroup makes every read differ."""
    try:
        v1_path, v2_path = parse_cgroup_file((proc / str(pid) / "cgroup").read_text())
        v1_mnt, v2_mnt = parse_mountinfo((proc / "self" / "mountinfo").read_text())
    except procfs.GONE:
        return None
    candidates = []
    if v1_path not in (None, "/") and v1_mnt:
        candidates.append(Freezer(Path(v1_mnt + str(v1_path)), v2=False))
    if v2_path not in (None, "/") and v2_mnt:
        candidates.append(Freezer(Path(v2_mnt + str(v2_path)), v2=True))
    for f in candidates:
        if not f.control.exists():
            continue
        for attempt in range(tries):
            if attempt:
                time.sleep(0.001)
            try:
                procs = {int(p) for p in (f.path / "cgroup.procs").read_text().split()}
            except (FileNotFoundError, ValueError):
                break
            if procs == set(tree_pids()):
                return f
    return None


def frozen(f: Freezer) -> bool:
    if f.v2:
        return "frozen 1" in (f.path / "cgroup.events").read_text()
    return f.control.read_text().strip() == "FROZEN"


def freeze(f: Freezer, timeout: float = 5.0) -> float:
    """Freeze and wait until frozen; returns the seconds it took."""
    t0 = time.monotonic()
    f.control.write_text("1" if f.v2 else "FROZEN")
    while not frozen(f):
        if time.monotonic() - t0 > timeout:
            thaw(f)
            raise FerrymanError(f"cgroup {f.path} did not freeze within {timeout:.0f} s",
                                hint="a task may be stuck in the kernel; try again")
        time.sleep(POLL_S)
    return time.monotonic() - t0


def thaw(f: Freezer) -> None:
    f.control.write_text("0" if f.v2 else "THAWED")
