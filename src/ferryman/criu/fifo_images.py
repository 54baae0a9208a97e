"""CRIU's FIFO images, decoded with pycriu: which FIFOs hold data, at which path, and leaving
a FIFO's data out of a restore.

A FIFO is a ``FIFO`` entry in ``files.img`` (``pipe_id``: the FIFO's inode number at the
dump; ``regf_id``: the ``REG`` entry that names its path) and, when it held unread data, an
entry in ``fifo-data.img`` (``pipe_id``, ``bytes``, then the bytes themselves) that the
restore writes back into the FIFO (criu/fifo.c, restore_pipe_data in criu/pipes.c).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from pathlib import Path

from ferryman.criu.decode import FILES, image_entries, load_image

FIFO_DATA = "fifo-data.img"


def fifos_with_data(images: Path) -> set[int]:
    """The ``pipe_id`` (inode number at the dump) of every FIFO that held unread data."""
    return {int(e["pipe_id"]) for e in image_entries(images / FIFO_DATA) if e.get("bytes")}


def fifo_paths(images: Path) -> dict[int, str]:
    """``pipe_id`` -> the FIFO's path, as CRIU opens it at restore (from the root of the
    restored mount namespace)."""
    entries = list(image_entries(images / FILES))
    names = {int(e["id"]): str(e["reg"]["name"]) for e in entries if e.get("type") == "REG"}
    out: dict[int, str] = {}
    for e in entries:
        fifo = e.get("fifo") if e.get("type") == "FIFO" else None
        if fifo is not None:
            name = names.get(int(fifo.get("regf_id", fifo["id"])))
            if name is not None:
                out[int(fifo["pipe_id"])] = name
    return out


def drop_fifo_data(images: Path, pipe_ids: Collection[int]) -> int:
    """Rewrite ``fifo-data.img`` without the data of ``pipe_ids``; the bytes left out.

    CRIU then restores those FIFOs without writing anything into them ("No data for pipe").
    """
    from pycriu import images as pycriu_images

    path = images / FIFO_DATA
    img = load_image(path)
    kept, dropped = [], 0
    for e in img.get("entries") or []:
        if int(e["pipe_id"]) in pipe_ids:
            dropped += int(e.get("bytes", 0))
        else:
            kept.append(e)
    if dropped:
        img["entries"] = kept
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with tmp.open("wb") as fh:
                pycriu_images.dump(img, fh)
            tmp.replace(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return dropped
