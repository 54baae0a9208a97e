"""Whether a dump's images hold file locks (``filelocks.img``), for the restore.

CRIU takes the locks again on restore only when told ``--file-locks``; without it the
restored tree runs without the locks it held (a second instance of a daemon could then
start beside it). The dump is told whenever the tree holds locks (host/filelocks.py), the
restore whenever its images have any.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ferryman.criu.decode import image_entries
from ferryman.errors import CriuError

log = logging.getLogger(__name__)

FILE_LOCKS_IMAGE = "filelocks.img"


def dumped_file_locks(images_dir: Path) -> bool:
    """Whether the images in ``images_dir`` hold a file lock (False without the image)."""
    path = images_dir / FILE_LOCKS_IMAGE
    if not path.exists():
        return False
    try:
        return next(image_entries(path, payload=False), None) is not None
    except (OSError, CriuError) as exc:
        log.warning("cannot read %s (%s): restoring with CRIU's --file-locks", path, exc)
        return True
