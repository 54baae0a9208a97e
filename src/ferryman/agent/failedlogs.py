"""What a failed migration leaves for the operator: the agent's own logs, bounded.

A migration that does not commit loses its images; the logs that CRIU and runc wrote here
for it go to ``STATE_DIR/failed/ID``. Only those: the names below, never a file the source
sent (the receiver refuses image files named ``*.log``, agent/files.py), at most
:data:`MAX_FILES` of them, each cut to its last :data:`MAX_LOG_BYTES`, and only the
:data:`KEEP` most recent failed migrations are kept.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OWN_LOGS = ("restore.log", "runc-restore.log", "page-server.log", "lazy-pages.log",
            "cpuinfo-check.log")
MAX_LOG_BYTES = 1 << 20
MAX_FILES = 16
KEEP = 32


def own_logs(workdir: Path, sets: list[Path]) -> list[tuple[Path, str]]:
    """The agent's logs of a migration: (file, name to keep it under), at most MAX_FILES;
    those of pre-copy set ``pre-K`` as ``pre-K-NAME``."""
    found = [(workdir / n, n) for n in OWN_LOGS]
    found += [(d / n, f"{d.name}-{n}") for d in sets for n in OWN_LOGS]
    return [(p, name) for p, name in found if p.is_file() and not p.is_symlink()][:MAX_FILES]


def keep(workdir: Path, sets: list[Path], failed_root: Path) -> dict[Path, Path]:
    """Copy the tails of ``workdir``'s own logs to ``failed_root/ID``; drop the oldest.
    Returns where each log went."""
    logs = own_logs(workdir, sets)
    if not logs:
        return {}
    dest = failed_root / workdir.name
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    for src, name in logs:
        _copy_tail(src, dest / name)
    prune(failed_root)
    return {src: dest / name for src, name in logs}


def prune(failed_root: Path, keep_last: int = KEEP) -> list[str]:
    """Remove all but the ``keep_last`` newest entries of ``failed_root``; their names."""
    entries = sorted(failed_root.iterdir(), key=lambda p: p.lstat().st_mtime, reverse=True)
    gone = []
    for p in entries[keep_last:]:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        gone.append(p.name)
    return gone


def _copy_tail(src: Path, dest: Path) -> None:
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - MAX_LOG_BYTES))
        data = fh.read(MAX_LOG_BYTES)
    dest.write_bytes(data)
