"""The filesystem names of a dump's unix sockets, from files.img as pycriu writes it."""

from __future__ import annotations

import quopri
from pathlib import Path

from pycriu import images

from ferryman.criu.unix_images import bound_paths

OPTS = {"so_sndbuf": 212992, "so_rcvbuf": 212992, "so_snd_tmo_sec": 0, "so_snd_tmo_usec": 0,
        "so_rcv_tmo_sec": 0, "so_rcv_tmo_usec": 0}
FOWN = {"uid": 0, "euid": 0, "signum": 0, "pid_type": 0, "pid": 0}


def usk(n: int, name: bytes, **extra: object) -> dict[str, object]:
    entry = {"id": n, "ino": 1000 + n, "type": 2, "state": 7, "flags": 2, "uflags": 0,
             "backlog": 0, "peer": 0, "fown": FOWN, "opts": OPTS,
             "name": quopri.encodestring(name).decode(), **extra}
    return {"type": "UNIXSK", "id": n, "usk": entry}


def test_bound_names_as_crius_restore_unlinks_them(tmp_path: Path) -> None:
    with (tmp_path / "files.img").open("wb") as fh:
        images.dump({"magic": "FILES", "entries": [
            usk(1, b"/srv/app.sock\0"),  # as CRIU records it: with the terminating NUL
            usk(2, b"rel.sock", name_dir="/var/run/app"),  # bound relative to its cwd
            usk(3, b"top.sock", name_dir="/"),
            usk(4, b"\0abstract"),  # no file
            usk(5, b""),  # unbound
            usk(6, b"/srv/gone.sock", deleted=True),  # its file was unlinked
            usk(7, b"nodir.sock"),  # relative, its directory unknown
            usk(8, b"/srv/app.sock"),  # an accepted socket shares its listener's name
            usk(9, b"/dev/log\0", uflags=1),  # USK_EXTERN: a peer outside the tree
        ]}, fh)
    assert bound_paths(tmp_path) == ["/srv/app.sock", "/var/run/app/rel.sock", "/top.sock"]


def test_no_files_image_no_names(tmp_path: Path) -> None:
    assert bound_paths(tmp_path) == []


def test_a_tree_with_its_own_mounts_has_no_names_here(tmp_path: Path) -> None:
    with (tmp_path / "files.img").open("wb") as fh:
        images.dump({"magic": "FILES", "entries": [usk(1, b"/srv/app.sock")]}, fh)
    (tmp_path / "mountpoints-12.img").write_bytes(b"")
    assert bound_paths(tmp_path) == []
