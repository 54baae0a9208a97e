"""FIFOs as kernel objects: which kernel this is, and which inode a FIFO is on it.

A FIFO's pipe belongs to its inode: every open of the FIFO, from any process of the kernel,
attaches to the inode's one pipe while anyone holds it open (fs/pipe.c, fifo_open(): it takes
``inode->i_pipe`` when set, and allocates a fresh pipe only when not). Two nodes that are
network namespaces of one host share that pipe; two machines never do. The boot id tells them
apart: it is the same for every namespace of one kernel and new at every boot.
"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Collection, Iterable
from pathlib import Path

from ferryman.host import procfs


def boot_id(proc: Path = procfs.PROC) -> str:
    """This kernel's boot id (``/proc/sys/kernel/random/boot_id``)."""
    return procfs.read_sysctl("kernel.random.boot_id", proc)


def held_fifo_devices(pids: Iterable[int], inodes: Collection[int],
                      proc: Path = procfs.PROC) -> dict[int, int]:
    """inode -> device of the FIFOs among ``inodes`` that the processes ``pids`` hold open
    (anonymous pipes are FIFOs too, on pipefs; CRIU's images name only named FIFOs by inode
    in ``inodes``)."""
    found: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for fd in (proc / str(pid) / "fd").iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    st = fd.stat()
                    if stat.S_ISFIFO(st.st_mode) and st.st_ino in inodes:
                        found[st.st_ino] = st.st_dev
        if len(found) == len(inodes):
            break
    return found


def fifo_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the FIFO at ``path`` on this node; None if there is none."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISFIFO(st.st_mode) else None
