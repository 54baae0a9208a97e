"""Which processes of a dump were stopped (SIGSTOP, job control) when CRIU dumped them.

The destination restores with ``--leave-stopped`` (every task stopped until the commit) and
then continues the tree; processes that were stopped at the source must stay stopped, as a
plain ``criu restore`` leaves them. CRIU keeps the state in each task's core image.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TASK_STOPPED = 3  # CRIU's TASK_STOPPED (compel/include/uapi/task-state.h)


def _entries(path: Path) -> list[Any]:
    from pycriu import images

    with path.open("rb") as fh:
        return list(images.load(fh).get("entries") or [])


def stopped_pids(images_dir: Path) -> frozenset[int]:
    """PIDs (as the dumped tree saw them) of the processes dumped stopped; empty when the
    images are not there (a container's images live elsewhere) or cannot be read (logged:
    the tree is then continued whole, as before)."""
    from pycriu import images

    pstree = images_dir / "pstree.img"
    if not pstree.exists():
        return frozenset()
    out = set()
    try:
        for item in _entries(pstree):
            pid = int(item["pid"])
            for entry in _entries(images_dir / f"core-{pid}.img"):
                if int(entry.get("tc", {}).get("task_state", 0)) == TASK_STOPPED:
                    out.add(pid)
    except (OSError, ValueError, KeyError, TypeError, images.MagicException) as exc:
        log.warning("cannot tell which tasks were dumped stopped (%s): continuing them all",
                    exc)
        return frozenset()
    return frozenset(out)
