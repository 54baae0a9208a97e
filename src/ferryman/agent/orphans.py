"""Restored-but-uncommitted workloads an agent kept stopped after losing the source.

A destination that loses the source after RESTORED and before COMMIT must neither resume
the tree (the source may have resumed its own copy) nor kill it (the source may be gone for
good). It keeps it stopped and records ``ORPHANED <pid> <start_time>``; an operator, who can
see which copy is alive, then resumes or kills it here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ferryman.criu.taskstate import stopped_pids
from ferryman.errors import FerrymanError
from ferryman.host.procfs import ProcessIdentity
from ferryman.targets.process import ProcessTree

OUTCOME_FILE = "outcome"


@dataclass(frozen=True, slots=True)
class Orphan:
    migration_id: str
    workdir: Path
    tree: ProcessTree

    @property
    def alive(self) -> bool:
        return self.tree.alive()


def orphan_record(identity: ProcessIdentity) -> str:
    return f"ORPHANED {identity.pid} {identity.start_time}\n"


def list_orphans(state_dir: Path) -> list[Orphan]:
    out: list[Orphan] = []
    root = state_dir / "migrations"
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        words = (d / OUTCOME_FILE).read_text().split() if (d / OUTCOME_FILE).exists() else []
        if len(words) == 3 and words[0] == "ORPHANED":
            ident = ProcessIdentity(pid=int(words[1]), start_time=int(words[2]))
            out.append(Orphan(d.name, d, ProcessTree(ident)))
    return out


def _find(state_dir: Path, migration_id: str) -> Orphan:
    for o in list_orphans(state_dir):
        if o.migration_id == migration_id:
            if not o.alive:
                raise FerrymanError(f"orphaned migration {migration_id}: its process is gone",
                                    hint="nothing to do; remove its directory")
            return o
    raise FerrymanError(f"no orphaned migration {migration_id!r} in {state_dir}",
                        hint="list them with 'ferryman orphans --state-dir DIR'")


def resume(state_dir: Path, migration_id: str) -> Orphan:
    """Continue the stopped tree here (only when the source's copy is known to be gone)."""
    o = _find(state_dir, migration_id)
    o.tree.resume(keep_stopped=stopped_pids(o.workdir))
    (o.workdir / OUTCOME_FILE).write_text(f"RESUMED {o.tree.pid}\n")
    _drop_images(o.workdir)
    return o


def kill(state_dir: Path, migration_id: str) -> Orphan:
    """Kill the stopped tree here (the source's copy runs on)."""
    o = _find(state_dir, migration_id)
    o.tree.kill()
    (o.workdir / OUTCOME_FILE).write_text(f"KILLED {o.tree.pid}\n")
    _drop_images(o.workdir)
    return o


def _drop_images(workdir: Path) -> None:
    for p in workdir.iterdir():
        if p.is_file() and not p.name.endswith(".log") and p.name != OUTCOME_FILE:
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
