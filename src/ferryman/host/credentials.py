"""Whether CRIU on this node can dump a tree whose tasks run with other credentials.

CRIU's parasite, running inside each task with that task's credentials, restores its
resource limits and opens its /proc; with a user of its own (a daemon that dropped to
``mosquitto``), another group (``dnsmasq`` to ``dip``) or fewer capabilities, that needs
CAP_SYS_RESOURCE in CRIU, which a container's root often lacks. The dump then fails with a
message that names none of this (``Can't get rlimit 0``, ``Can't retrieve FD from socket``),
so the pre-flight's dump row says it (migration/checks.py ``dump_row``). Parsers are pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ferryman.host import procfs

CAP_SYS_RESOURCE: Final = 24
FIELDS: Final = ("Uid", "Gid", "CapEff")


def credentials(status_text: str) -> dict[str, str]:
    """The ``Uid``, ``Gid`` and ``CapEff`` lines of /proc/PID/status, as text."""
    out = {}
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = " ".join(value.split())
    return out


def lacks_sys_resource(status_text: str) -> bool:
    """This task's effective capabilities lack CAP_SYS_RESOURCE (unknown: False)."""
    try:
        return not int(credentials(status_text).get("CapEff", ""), 16) >> CAP_SYS_RESOURCE & 1
    except ValueError:
        return False


def difference(ours: dict[str, str], theirs: dict[str, str]) -> str:
    """How ``theirs`` differ from ``ours`` (empty when they do not)."""
    if theirs.get("Uid") != ours.get("Uid"):
        return f"runs as uid {theirs.get('Uid', '?').split()[0]}"
    if theirs.get("Gid") != ours.get("Gid"):
        return f"runs as gid {theirs.get('Gid', '?').split()[0]}"
    if theirs.get("CapEff") != ours.get("CapEff"):
        return f"dropped capabilities (CapEff {theirs.get('CapEff', '?')})"
    return ""


def problem(pids: Iterable[int], proc: Path = procfs.PROC) -> str:
    """Empty, unless CRIU here (this process's capabilities) lacks CAP_SYS_RESOURCE and a
    task of the tree runs with other credentials than this process: then which and how."""
    try:
        own = (proc / "self" / "status").read_text()
    except OSError:
        return ""
    if not lacks_sys_resource(own):
        return ""
    ours = credentials(own)
    for pid in pids:
        try:
            text = (proc / str(pid) / "status").read_text()
            comm = (proc / str(pid) / "comm").read_text().strip()
        except OSError:
            continue
        how = difference(ours, credentials(text))
        if how:
            return f"PID {pid} ({comm}) {how}"
    return ""
