"""Faults for the fault matrix: kill a process, cut a link, fill a disk, corrupt a file.

Each acts on the real thing (processes by PID, nftables rules inside a node's namespace, a
tmpfs in an agent's mount namespace); nothing here is simulated.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.netns import Node
from tests.support.workloads import children

CUT_TABLE = "fmcut"  # never CRIU-*: the matrix checks that no CRIU lock table is left


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def criu_action(pid: int) -> str:
    """What criu process ``pid`` does (page-server, lazy-pages; dump, restore: a swrk names
    its action in its command line as ``criu: dump ...``), or "" for no criu."""
    argv = cmdline(pid)
    if not argv:
        return ""
    if argv[0].startswith("criu: "):
        return argv[0].split()[1]
    return argv[1] if Path(argv[0]).name == "criu" and len(argv) > 1 else ""


def criu_below(pid: int, action: str) -> list[int]:
    """criu processes below ``pid`` doing ``action`` (see criu_action)."""
    return [c for c in descendants(pid) if criu_action(c) == action]


def wait_criu_below(pid: int, action: str, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while not (found := criu_below(pid, action)):
        if time.monotonic() > deadline:
            tree = {c: cmdline(c) for c in descendants(pid)}
            raise TimeoutError(f"no criu {action} below PID {pid}: {tree}")
        time.sleep(0.002)
    return found[0]


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def criu_using(base: Path) -> list[int]:
    """criu processes (anyone's) whose cwd or an open file lies under ``base``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (d / "comm").read_text().strip() != "criu":
                continue
            links = [os.readlink(d / "cwd")]
            with contextlib.suppress(OSError):
                links += [os.readlink(f) for f in (d / "fd").iterdir()]
            if any(link.startswith(str(base)) for link in links):
                found.append(int(d.name))
    return found


def cut_link(node: Node, peer_ip: str, *, inbound: bool = True, outbound: bool = True) -> None:
    """Drop every packet between ``node`` and ``peer_ip`` (inbound, outbound or both)."""
    rules = [f"add table inet {CUT_TABLE}"]
    if inbound:
        rules += [f"add chain inet {CUT_TABLE} in {{ type filter hook input priority -400; }}",
                  f"add rule inet {CUT_TABLE} in ip saddr {peer_ip} drop"]
    if outbound:
        rules += [f"add chain inet {CUT_TABLE} out {{ type filter hook output priority -400; }}",
                  f"add rule inet {CUT_TABLE} out ip daddr {peer_ip} drop"]
    subprocess.run(node.argv("nft", "-f", "-"), input="\n".join(rules) + "\n", text=True,
                   check=True, capture_output=True)


def mend_link(node: Node) -> None:
    node.run("nft", "delete", "table", "inet", CUT_TABLE, check=False)


def lock_tables(node: Node) -> list[str]:
    """CRIU's network-lock tables in ``node``'s namespace."""
    out = node.run("nft", "list", "tables", check=False).stdout
    return [ln.split()[-1] for ln in out.splitlines() if ln.startswith("table inet CRIU-")]


def fill_disk(agent_pid: int, directory: Path) -> None:
    """Fill the filesystem of ``directory`` as the agent's mount namespace sees it."""
    subprocess.run(["nsenter", "-m", "-t", str(agent_pid), "dd", "if=/dev/zero",
                    f"of={directory / 'filler'}", "bs=1M"], capture_output=True, check=False)


def corrupt(path: Path, offset: int = 0, length: int = 4096) -> None:
    """Overwrite ``length`` bytes of ``path`` at ``offset`` (clamped to the file) with junk."""
    size = path.stat().st_size
    offset = min(offset, max(size - length, 0))
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(bytes((offset + i * 131) % 251 for i in range(min(length, size))))
