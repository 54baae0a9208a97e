"""A Podman container moved by hand with Podman's own tools: checkpoint/export → copy →
restore/import (podman-container-checkpoint(1), podman-container-restore(1)).

``podman container checkpoint --export ARCHIVE --tcp-established NAME`` on A (Podman's
defaults otherwise: the archive is zstd-compressed, the container stays as a stopped record);
``ip addr del`` of the service address on A; ``cp`` of the archive into B's directory (one
host; between machines ``scp ARCHIVE B:DIR``, adding a connection); on B an nftables table
dropping the service port's segments (a client segment reaching B before the restore would be
answered with a reset; ferryman holds them the same way); ``ip addr add`` on B; ``podman
container restore --import ARCHIVE --tcp-established`` on B; the nftables table deleted;
``arping -U`` from B in the background. total = checkpoint start → arping started. Podman
has no post-copy and no TLS page path: the same commands serve both cells.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Protocol

from bench.baseline import _addr, _announce, _announced
from bench.env import Env, Outcome
from bench.proc import run_timed, stop


class PodBox(Protocol):
    """The container as this baseline uses it (bench/podmanbox.py's PodBox; named here so
    that module, which calls this one, is not imported back)."""

    name: str

    def on_a(self, *cmd: str) -> list[str]: ...

    def on_b(self, *cmd: str) -> list[str]: ...

    def pid_on_b(self) -> int: ...


HOLD = "fmhand"  # B's nftables table that drops the port until the restore returned


def export_import(env: Env, box: PodBox, run_dir: Path, restored: list[int], *, port: int
                  ) -> Outcome:
    a, b = env.topo["a"], env.topo["b"]
    steps: dict[str, float] = {}
    archive_a = run_dir / "checkpoint-a.tar.zst"
    dir_b = run_dir / "on-b"
    dir_b.mkdir()
    archive_b = dir_b / archive_a.name
    arping: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    try:
        dump = run_timed(box.on_a("podman", "container", "checkpoint", "--export",
                                  str(archive_a), "--tcp-established", box.name),
                         env.timeout).check("podman container checkpoint --export")
        _addr(a, "del", env, steps)
        copy = run_timed(box.on_b("cp", str(archive_a), str(archive_b)), env.timeout
                         ).check("cp of the archive")
        hold = run_timed(box.on_b("nft", f"add table inet {HOLD} {{ chain in {{ type filter "
                                  f"hook input priority 0; tcp dport {port} drop; }}; }}"),
                         env.timeout).check("nft add table (hold the port)")
        _addr(b, "add", env, steps)
        restore = run_timed(box.on_b("podman", "container", "restore", "--import",
                                     str(archive_b), "--tcp-established"), env.timeout
                            ).check("podman container restore --import")
        unhold = run_timed(box.on_b("nft", "delete", "table", "inet", HOLD), env.timeout
                           ).check("nft delete table")
        arping = _announce(env, b, steps)
        total_ms = (time.monotonic() - t0) * 1000
        restored.append(box.pid_on_b())
        steps.update(_announced(arping, env.timeout))
        size = archive_b.stat().st_size
        return Outcome(total_ms=total_ms, bytes_moved=size, details={
            "dump_ms": dump.ms, "copy_ms": copy.ms, "restore_ms": restore.ms,
            "hold_ms": hold.ms, "unhold_ms": unhold.ms, "archive_bytes": size,
            "copied_bytes": size, **steps})
    finally:
        if arping is not None:
            stop(arping)
        shutil.rmtree(dir_b, ignore_errors=True)
        archive_a.unlink(missing_ok=True)
