"""Restored-but-uncommitted workloads an agent kept stopped after losing the source.

A destination that loses the source after RESTORED and before COMMIT must neither resume
the tree (the source may have resumed its own copy) nor kill it (the source may be gone for
good). It keeps it stopped and records ``ORPHANED <pid> <start_time> [<ip/prefix@dev>]``; an
operator, who can see which copy is alive, then resumes or kills it here. A held copy does
not hold the service address it came with (the source copy may run on and need it): the
address is taken down here and named in the record, and ``resume`` brings it up again.
The record is written as soon as the tree is restored, before the source hears of it, so an
agent killed while it holds the tree leaves it listed; ``settle_records`` at the next start
takes such a copy's address down, and turns the record of a copy that died meanwhile (a
post-copy one dies with its lazy-pages daemon) into ``GONE``.

Records (how each migration ended: DONE, ORPHANED, LOST, RESUMED, KILLED) are the agent's own
bookkeeping, in ``STATE_DIR/outcomes/ID``, beside ``STATE_DIR/migrations/ID`` where a peer's
image files go: an image name is one file name inside its migration directory, so no peer can
write or forge a record. ``resume`` and ``kill`` act only on the process the record names
(same PID and start time) while it is still stopped, as the agent left it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ferryman.criu.taskstate import stopped_pids
from ferryman.errors import FerrymanError
from ferryman.host import addresses, procfs
from ferryman.host.procfs import ProcessIdentity
from ferryman.targets.process import ProcessTree

OUTCOMES = "outcomes"


@dataclass(frozen=True, slots=True)
class Orphan:
    migration_id: str
    workdir: Path
    tree: ProcessTree
    address: addresses.MoveAddress | None = None  # its service address, taken down

    @property
    def alive(self) -> bool:
        return self.tree.alive()


def orphan_record(identity: ProcessIdentity,
                  address: addresses.MoveAddress | None = None) -> str:
    tail = f" {address}" if address is not None else ""
    return f"ORPHANED {identity.pid} {identity.start_time}{tail}\n"


def fetching_record(identity: ProcessIdentity,
                    address: addresses.MoveAddress | None = None) -> str:
    """A streamed restore's tree while its pages come (and the address it took here): never
    whole, so never an orphan; an agent that starts and finds it kills it and takes the
    address down again (:func:`settle_records`)."""
    tail = f" {address}" if address is not None else ""
    return f"FETCHING {identity.pid} {identity.start_time}{tail}\n"


def _settle_fetching(state_dir: Path, record: Path) -> str | None:
    """Kill the incomplete tree a FETCHING record names, if it still lives, and take its
    address down (the source, which kept its copy, has it)."""
    words = record.read_text().split()
    if (ident := _named_tree(words, "FETCHING")) is None:
        return None
    tree = ProcessTree(ident)
    if tree.alive():
        tree.kill()
    said = (f"{record.name}: killed PID {tree.pid}, restored here while its pages came "
            "when this agent stopped (the source kept its copy)")
    try:
        address = _address(words)
        if address is not None and addresses.present(address.ip):
            addresses.delete(address)
            said += f"; took {address} down"
    except FerrymanError as exc:
        said += f"; could not take its address down: {exc}"
    write_outcome(state_dir, record.name, f"KILLED {tree.pid}\n")
    return said


def _named_tree(words: list[str], kind: str) -> ProcessIdentity | None:
    """The tree a ``KIND PID START_TIME [ADDRESS]`` record names, or None for another."""
    if len(words) in (3, 4) and words[0] == kind and all(w.isdigit() for w in words[1:3]):
        return ProcessIdentity(pid=int(words[1]), start_time=int(words[2]))
    return None


def _address(words: list[str]) -> addresses.MoveAddress | None:
    """The record's address word, if any (raises FerrymanError when it is malformed)."""
    return addresses.parse_move_address(words[3]) if len(words) == 4 else None


def write_outcome(state_dir: Path, migration_id: str, record: str) -> None:
    """Record how ``migration_id`` ended (a new file replaces the old one)."""
    root = state_dir / OUTCOMES
    root.mkdir(mode=0o700, exist_ok=True)
    tmp = root / f".{migration_id}.tmp"
    tmp.write_text(record)
    tmp.replace(root / migration_id)


def has_outcome(state_dir: Path, migration_id: str) -> bool:
    return (state_dir / OUTCOMES / migration_id).is_file()


def outcome_of(state_dir: Path, migration_id: str) -> str:
    """The record of ``migration_id`` ("" when there is none or it cannot be read)."""
    try:
        return (state_dir / OUTCOMES / migration_id).read_text()
    except OSError:
        return ""


def list_orphans(state_dir: Path) -> list[Orphan]:
    out: list[Orphan] = []
    root = state_dir / OUTCOMES
    if not root.is_dir():
        return out
    for record in sorted(root.iterdir()):
        if record.name.startswith(".") or not record.is_file():
            continue  # being written
        words = record.read_text().split()
        if (ident := _named_tree(words, "ORPHANED")) is not None:
            try:
                address = _address(words)
            except FerrymanError:
                continue  # not a record this agent wrote
            out.append(Orphan(record.name, state_dir / "migrations" / record.name,
                              ProcessTree(ident), address))
    return out


def settle_records(state_dir: Path) -> list[str]:
    """At agent start: held copies hold no address; a held copy that is gone is no orphan.
    Returns what it did, one line each, for the log."""
    done = []
    held = {o.migration_id for o in list_orphans(state_dir)}
    root = state_dir / OUTCOMES
    for record in sorted(root.iterdir()) if root.is_dir() else []:
        if not record.name.startswith(".") and record.is_file() and \
                (said := _settle_fetching(state_dir, record)) is not None:
            done.append(said)
        workdir = state_dir / "migrations" / record.name
        if record.name not in held and not record.name.startswith(".") and workdir.is_dir():
            _drop_images(workdir)  # an agent that died after the commit left them
    for o in list_orphans(state_dir):
        if o.address is not None and addresses.present(o.address.ip):
            try:
                addresses.delete(o.address)
            except FerrymanError as exc:
                done.append(f"{o.migration_id}: could not take {o.address} down: {exc}")
            else:
                done.append(f"{o.migration_id}: took {o.address} down (its copy is held)")
        if not o.alive:
            write_outcome(state_dir, o.migration_id, f"GONE {o.tree.pid}\n")
            _drop_images(o.workdir)
            done.append(f"{o.migration_id}: PID {o.tree.pid} is gone: no orphan")
    return done


def _find(state_dir: Path, migration_id: str) -> Orphan:
    for o in list_orphans(state_dir):
        if o.migration_id == migration_id:
            if not o.alive:
                raise FerrymanError(f"orphaned migration {migration_id}: its process is gone",
                                    hint="nothing to do; remove its directory")
            if procfs.state(o.tree.pid) not in ("T", "t"):
                raise FerrymanError(f"orphaned migration {migration_id}: PID {o.tree.pid} is "
                                    f"no longer stopped, so it is not the copy this agent "
                                    f"kept; nothing done", hint="check the process by hand")
            return o
    raise FerrymanError(f"no orphaned migration {migration_id!r} in {state_dir}",
                        hint="list them with 'ferryman orphans --state-dir DIR'")


def resume(state_dir: Path, migration_id: str) -> Orphan:
    """Continue the stopped tree here (only when the source's copy is known to be gone)."""
    o = _find(state_dir, migration_id)
    if o.address is not None and not addresses.present(o.address.ip):
        addresses.add(o.address)  # the restored sockets and its clients need it
    o.tree.resume(keep_stopped=stopped_pids(o.workdir))
    write_outcome(state_dir, migration_id, f"RESUMED {o.tree.pid}\n")
    _drop_images(o.workdir)
    return o


def kill(state_dir: Path, migration_id: str) -> Orphan:
    """Kill the stopped tree here (the source's copy runs on)."""
    o = _find(state_dir, migration_id)
    o.tree.kill()
    write_outcome(state_dir, migration_id, f"KILLED {o.tree.pid}\n")
    _drop_images(o.workdir)
    return o


def _drop_images(workdir: Path) -> None:
    if not workdir.is_dir():
        return
    for p in workdir.iterdir():
        if p.is_file() and not p.name.endswith(".log"):
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
