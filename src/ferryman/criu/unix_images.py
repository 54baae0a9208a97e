"""The filesystem names of a dump's unix sockets (``UNIXSK`` entries of ``files.img``).

CRIU's restore unlinks the socket file at each such name and binds a new socket there
(criu/sk-unix.c, unlink_sk(), called when the images are collected).
"""

from __future__ import annotations

import posixpath
import quopri
from pathlib import Path

from ferryman.criu.decode import FILES, image_entries, own_mount_namespace

USK_EXTERN = 1  # criu/sk-unix.c: the entry names an external socket (--ext-unix-sk)


def bound_paths(images: Path) -> list[str]:
    """Absolute paths the dumped unix sockets are bound to (abstract and deleted names, and
    relative ones without the directory CRIU recorded, are left out); none for a tree with
    its own mount namespace (decode.own_mount_namespace)."""
    out: list[str] = []
    if own_mount_namespace(images):
        return out
    for e in image_entries(images / FILES):
        usk = e.get("usk") if e.get("type") == "UNIXSK" else None
        if usk is None or usk.get("deleted") or int(usk.get("uflags", 0)) & USK_EXTERN:
            continue  # USK_EXTERN: a peer outside the tree, which the restore only connects to
        # pycriu gives the name quoted-printable (images/sk-unix.proto: conv "unix_name")
        raw = quopri.decodestring(str(usk.get("name", "")).encode()).rstrip(b"\0")
        if not raw or raw.startswith(b"\0"):
            continue  # unbound, or abstract: no file
        name = raw.decode("utf-8", "surrogateescape")
        if not name.startswith("/"):
            where = str(usk.get("name_dir", ""))
            if not where:
                continue
            name = posixpath.join("/", where, name)  # where: the task's cwd or root
        if name not in out:
            out.append(name)
    return out
