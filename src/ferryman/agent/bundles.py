"""Where a container arriving here lives: the destination's own directories, never the source's.

A source names the container (its id) and whether its rootfs lies inside its bundle; the
destination decides the paths. Under the agent's bundle root (``--bundle-root``, default
``STATE_DIR/bundles``) container ``ID`` gets::

    ID/bundle    the bundle (config.json, and the rootfs when the source keeps it inside)
    ID/rootfs    the rootfs, when the source keeps it outside its bundle
    ID/lock      held (flock) while a migration of ID is arriving

rsync writes (and ``--delete`` removes) only there: :meth:`BundleSlot.sync_targets` is what
the sync listener accepts, by name. A slot left by an earlier migration of the same id (the
container moved on, or was deleted) is reused; a migration that does not commit removes its
slot, so a failed one leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from pathlib import Path

from ferryman.errors import RuncError
from ferryman.targets.runc import SYNC_BUNDLE, SYNC_ROOTFS, check_id, with_rootfs

LOCK = "lock"


class BundleSlot:
    """The directories of container ``container`` under ``root``, claimed by one migration."""

    def __init__(self, root: Path, container: str, rootfs_in_bundle: str | None) -> None:
        self.home = root / check_id(container)
        self.container = container
        self.bundle = self.home / "bundle"
        self.rootfs = self.bundle / rootfs_in_bundle if rootfs_in_bundle is not None \
            else self.home / "rootfs"
        self.outside = rootfs_in_bundle is None
        self._lock: int | None = None

    def claim(self) -> None:
        """Create the slot and hold its lock; RuncError when another migration of the same
        container is arriving here now."""
        self.home.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            self.home.mkdir(mode=0o711)
        fd = os.open(self.home / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno != errno.EWOULDBLOCK:
                raise
            raise RuncError("restore", self.container, "another migration of this container "
                            "is arriving here now",
                            hint="wait for it to end, or move another container") from exc
        self._lock = fd
        for d in self.sync_targets().values():
            d.mkdir(mode=0o755, exist_ok=True)

    def sync_targets(self) -> dict[str, Path]:
        """The names a source may sync into, and the directory each one is here."""
        if self.outside:
            return {SYNC_BUNDLE: self.bundle, SYNC_ROOTFS: self.rootfs}
        return {SYNC_BUNDLE: self.bundle}

    def localize(self) -> None:
        """Before the restore: the synced ``config.json`` names this slot's rootfs, which
        must be a directory inside the slot (not a link out of it)."""
        home = self.home.resolve()
        real = self.rootfs.resolve()
        if not real.is_dir() or (real != home and home not in real.parents):
            raise RuncError("restore", self.container, "the synced bundle's rootfs is not a "
                            "directory inside it", hint="check the container's bundle")
        config = self.bundle / "config.json"
        try:
            fd = os.open(config, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise RuncError("restore", self.container, f"the synced bundle has no usable "
                            f"config.json ({exc.strerror})") from exc
        with os.fdopen(fd) as fh:
            text = fh.read(1 << 20)
        new = with_rootfs(text, self.bundle, self.rootfs)
        if new is not None:  # a new file replaces config.json (never writes through a link)
            tmp = self.bundle / ".config.json.ferryman"
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w") as fh:
                fh.write(new)
            tmp.replace(config)

    def release(self, *, remove: bool) -> None:
        """Unlock; ``remove`` the slot with everything synced into it."""
        if remove:
            shutil.rmtree(self.home, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
