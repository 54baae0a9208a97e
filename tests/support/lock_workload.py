"""A daemon as many are: it holds an flock on its pidfile and a POSIX lock on its database
file, and keeps a scratch file open after deleting it (a "ghost" CRIU must copy).

    python lock_workload.py --dir DIR --status FILE [--ghost-mib N]

Its files in DIR hold fixed contents (``locked``), so that a copy on another node can match.
On SIGUSR1 it writes FILE: {"pid", "beats", "ghost_ok"} (``ghost_ok``: the deleted file
still reads back as written, None without one).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import time
from pathlib import Path

PATTERN = bytes(range(256)) * 4096  # 1 MiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--status", type=Path, required=True)
    ap.add_argument("--ghost-mib", type=int, default=0)
    a = ap.parse_args()
    pidfile = (a.dir / "app.pid").open("r+")
    fcntl.flock(pidfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
    database = (a.dir / "app.db").open("r+")
    fcntl.lockf(database, fcntl.LOCK_EX | fcntl.LOCK_NB)
    ghost = None
    if a.ghost_mib:
        path = a.dir / "scratch.tmp"
        ghost = path.open("w+b")
        ghost.write(PATTERN * a.ghost_mib)
        ghost.flush()
        path.unlink()
    beats = 0

    def report(*_: object) -> None:
        ok = None
        if ghost is not None:
            ghost.seek(0)
            ok = ghost.read() == PATTERN * a.ghost_mib
        tmp = a.status.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "beats": beats, "ghost_ok": ok}))
        tmp.replace(a.status)

    signal.signal(signal.SIGUSR1, report)
    report()
    while True:
        beats += 1
        time.sleep(0.005)


if __name__ == "__main__":
    main()
