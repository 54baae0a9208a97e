"""The source copy the controller stopped at the commit, and the service address it took
away, for its guard to settle.

At the commit the controller queues a SIGSTOP to every source task (agent/source.py), so that
they never run again should CRIU let them go. A controller killed from then on leaves them
stopped for good, on no list: the guard (agent/lockguard.py) settles them once the controller
has gone. ``STOPPED`` names them (PID and start time, so a reused PID is never touched);
``COMMIT`` is written right before the Commit message goes out. Without ``COMMIT`` the
destination never had the commit: the source copy is the workload, and is continued (the
destination keeps its own copy stopped, for the operator to kill). With it, the destination
may run the workload, or keep the only copy stopped: the source copy is killed. A controller
``ADDRESS`` names the service address (``--move-address``) taken down on this node at the
dump: without ``COMMIT`` it comes back with the continued copy. A lazy dump that ended before
the commit (every page went, or the destination's restore failed) left the tree stopped, CRIU
gone: ``STOPPED`` names it then too, and ``FROZEN`` the freezer cgroup the controller froze
(CRIU puts it back frozen), which the guard thaws. ``FORGET`` is the command the guard runs
after it killed a committed copy (a runc container's record). A controller that ends by
itself removes these files (it settled the copy itself).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from ferryman.errors import FerrymanError, NoSuchProcess
from ferryman.host import addresses, cgroups, procfs
from ferryman.host.procfs import ProcessIdentity

STOPPED = "source-stopped"
FROZEN = "source-frozen"
FORGET = "source-forget"
COMMIT = "commit-sent"
ADDRESS = "address-moved"


def record_stopped(workdir: Path, pids: list[int]) -> None:
    idents = []
    for pid in pids:
        with contextlib.suppress(NoSuchProcess):
            idents.append(procfs.identity(pid))
    (workdir / STOPPED).write_text("".join(f"{i.pid} {i.start_time}\n" for i in idents))


def record_frozen(workdir: Path, freezer: cgroups.Freezer) -> None:
    (workdir / FROZEN).write_text(f"{'v2' if freezer.v2 else 'v1'} {freezer.path}\n")


def record_forget(workdir: Path, argv: list[str]) -> None:
    (workdir / FORGET).write_text(json.dumps(argv))


def record_address(workdir: Path, addr: addresses.MoveAddress) -> None:
    (workdir / ADDRESS).write_text(f"{addr}\n")


def mark_commit(workdir: Path) -> None:
    (workdir / COMMIT).touch()


def clear(workdir: Path) -> None:
    for name in (STOPPED, COMMIT, ADDRESS, FROZEN, FORGET):
        (workdir / name).unlink(missing_ok=True)


def traced(pid: int) -> bool:
    """True while a tracer (CRIU, going away with the controller) still holds ``pid``."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(ln.split()[1:] != ["0"] for ln in status.splitlines()
               if ln.startswith("TracerPid:"))


def settle(workdir: Path, wait: float = 10.0) -> str | None:
    """After the controller died: continue or kill the tasks it stopped. What was done.

    A SIGCONT must come after CRIU let them go, or the SIGSTOP still queued stops them
    again: the tasks are waited for until no tracer holds them (at most ``wait`` s)."""
    if not any((workdir / n).exists() for n in (STOPPED, ADDRESS)):
        return None
    committed = (workdir / COMMIT).exists()
    sig = signal.SIGKILL if committed else signal.SIGCONT
    idents = _stopped(workdir)
    deadline = time.monotonic() + wait
    while any(traced(i.pid) for i in idents) and time.monotonic() < deadline:
        time.sleep(0.02)
    _thaw(workdir)  # stopped by a signal, they stay stopped until the SIGCONT
    for ident in idents:
        if procfs.is_alive(ident):
            with contextlib.suppress(ProcessLookupError):
                os.kill(ident.pid, sig)
    if not committed:
        _take_address_back(workdir)
    else:
        _forget(workdir)
    clear(workdir)
    return "killed" if committed else "continued"


def _stopped(workdir: Path) -> list[ProcessIdentity]:
    try:
        lines = (workdir / STOPPED).read_text().split("\n")
    except FileNotFoundError:
        return []
    return [ProcessIdentity(pid=int(w[0]), start_time=int(w[1]))
            for w in (ln.split() for ln in lines)
            if len(w) == 2 and all(x.isdigit() for x in w)]


def _forget(workdir: Path) -> None:
    try:
        argv = json.loads((workdir / FORGET).read_text())
    except (FileNotFoundError, ValueError):
        return
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30, check=False)


def _thaw(workdir: Path) -> None:
    try:
        kind, _, path = (workdir / FROZEN).read_text().strip().partition(" ")
    except FileNotFoundError:
        return
    if kind in ("v1", "v2") and path.startswith("/sys/fs/cgroup/"):
        with contextlib.suppress(OSError):
            cgroups.thaw(cgroups.Freezer(Path(path), kind == "v2"))


def _take_address_back(workdir: Path) -> None:
    try:
        addr = addresses.parse_move_address((workdir / ADDRESS).read_text().strip())
    except (FileNotFoundError, FerrymanError):
        return
    if not addresses.present(addr.ip):
        with contextlib.suppress(FerrymanError):
            addresses.add(addr)
