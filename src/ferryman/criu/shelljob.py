"""Shell jobs: trees whose session leader is not in them (CRIU's ``--shell-job``).

Anything started from a shell without ``setsid`` (``./server &``, ``nohup … &``,
``unshare -p -f …``) stays in the shell's session: its root is no session leader, and CRIU
refuses to dump it unless told ``--shell-job``, as a hand-typed ``criu dump`` is. ferryman
tells it whenever the tree is one, and the restore whenever the images say the tree was one
(the restored tree then joins the restoring criu's session and process group, as with
``criu restore --shell-job``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ferryman.criu.decode import image_entries
from ferryman.errors import CriuError

log = logging.getLogger(__name__)


def shell_job(pid: int) -> bool:
    """Whether the tree rooted at ``pid`` is a shell job: its root leads no session (False
    when the process is gone: the dump then fails on its own)."""
    try:
        return os.getsid(pid) != pid
    except ProcessLookupError:
        return False


def root_is_shell_job(entry: dict[str, object]) -> bool:
    """Whether pstree.img's first entry (the root) was dumped as a shell job (pure)."""
    return entry.get("sid") != entry.get("pid")


def dumped_as_shell_job(images_dir: Path) -> bool:
    """Whether the tree in ``images_dir`` was dumped as a shell job (False when there is no
    pstree.img to read: a container's images live elsewhere)."""
    pstree = images_dir / "pstree.img"
    try:
        root = next(image_entries(pstree, payload=False), None)
    except (OSError, CriuError) as exc:
        log.warning("cannot read %s (%s): restoring it as no shell job", pstree, exc)
        return False
    return root is not None and root_is_shell_job(root)
