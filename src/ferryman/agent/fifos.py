"""FIFO data that must not be restored twice: when the destination is the source's kernel.

The source stays frozen, FIFOs open, until the destination has restored (the post-dump hold).
On two machines the destination's FIFO is another pipe, empty, and CRIU writes the dumped
data into it. On two network namespaces of one host (our test nodes, a same-host move) the
FIFO at that path is the very pipe the frozen source still holds, its data still in it:
CRIU's restore wrote it in a second time, which failed with EAGAIN when the FIFO was more than
half full ("Error splicing data: Resource temporarily unavailable", criu/pipes.c) and silently
doubled the data when it was not. Such a FIFO's data stays where it is: after the commit the
source's tasks die and the destination holds the pipe, data intact; after a rollback the
source resumes with its FIFO as it was.

The source names, with the Restore, its boot id and the device of each FIFO with unread data
it holds; the destination leaves out the data of each FIFO that its path resolves to the same
inode of the same kernel (criu/fifo_images.py rewrites ``fifo-data.img``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ferryman.criu import fifo_images
from ferryman.criu.decode import own_mount_namespace
from ferryman.host import fifos
from ferryman.wire.limits import MAX_FIFO_DEVICES

log = logging.getLogger(__name__)
Identity = Callable[[str], tuple[int, int] | None]


def held_with_data(images: Path, pids: Iterable[int]) -> dict[str, int]:
    """Source, frozen after the dump: Restore.fifo_devices for ``images`` (inode as text ->
    device) of the FIFOs with unread data that the tasks ``pids`` hold."""
    inodes = fifo_images.fifos_with_data(images)
    if not inodes:
        return {}
    found = fifos.held_fifo_devices(pids, inodes)
    return {str(ino): dev for ino, dev in sorted(found.items())[:MAX_FIFO_DEVICES]}


def shared_pipes(source_kernel: str, here_kernel: str, devices: Mapping[int, int],
                 paths: Mapping[int, str], identity: Identity) -> dict[int, str]:
    """pipe_id -> path of the FIFOs whose path here is the source's own inode on this same
    kernel: the same pipe, its data in it. Pure: ``identity`` says what a path is here."""
    if not source_kernel or source_kernel != here_kernel:
        return {}
    return {pipe: path for pipe, path in paths.items()
            if pipe in devices and identity(path) == (devices[pipe], pipe)}


def keep_shared_fifo_data(images: Path, source_kernel: str,
                          fifo_devices: Mapping[str, int]) -> list[str]:
    """Destination, before the restore of a process tree: leave out of ``images`` the data of
    the FIFOs this node shares with the frozen source; returns their paths.

    A tree with a mount namespace of its own is left alone (decode.own_mount_namespace).
    """
    if not fifo_devices or own_mount_namespace(images):
        return []
    devices = {int(ino): dev for ino, dev in fifo_devices.items() if ino.isdecimal()}
    shared = shared_pipes(source_kernel, fifos.boot_id(), devices,
                          fifo_images.fifo_paths(images), fifos.fifo_identity)
    if shared:
        dropped = fifo_images.drop_fifo_data(images, shared)
        log.info("%d FIFO(s) here are the source's own pipes (same kernel, same inode), "
                 "their %d unread bytes still in them: not restored a second time: %s",
                 len(shared), dropped, ", ".join(sorted(shared.values())))
    return sorted(shared.values())
