"""CRIU image files decoded with pycriu, its errors translated once here."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ferryman.errors import CriuError

_U32 = struct.Struct("<I")
FILES = "files.img"  # every file descriptor's entry (REG, FIFO, UNIXSK, ...)


def own_mount_namespace(images: Path) -> bool:
    """The dumped tree has mounts of its own: its paths are relative to a root CRIU builds
    at restore, not to this node's."""
    return any(images.glob("mountpoints-*.img"))


def load_image(path: Path, *, payload: bool = True) -> dict[str, Any]:
    """The image at ``path`` as pycriu decodes it (``magic``, ``entries``); ``payload``
    False skips the raw data that follows some entries (pycriu would base64 it all)."""
    from google.protobuf.message import DecodeError
    from pycriu import images

    try:
        with path.open("rb") as fh:
            img: dict[str, Any] = images.load(fh, no_payload=not payload)
    except (images.MagicException, DecodeError, KeyError, ValueError, struct.error) as exc:
        raise _damaged(path, exc) from exc
    return img


def image_entries(path: Path, *, payload: bool = True) -> Iterator[dict[str, Any]]:
    """The entries of the image at ``path``; none when there is no such file."""
    if path.exists():
        yield from load_image(path, payload=payload).get("entries") or []


class PipeDataSpan(NamedTuple):
    """One entry of a pipe-data image: its pipe, how many data bytes, and the byte range
    ``[start, end)`` of the entry together with the data that follows it."""

    pipe_id: int
    nbytes: int
    start: int
    end: int


def pipe_data_spans(path: Path) -> tuple[int, list[PipeDataSpan]]:
    """A pipe-data image (``pipes-data.img``, ``fifo-data.img``) without decoding its data:
    the length of its header (the magics) and its entries' spans (criu/pipes.c,
    pipe_data_read: each entry's data follows it)."""
    from google.protobuf.message import DecodeError
    from pycriu.images import magic, pb

    spans = []
    try:
        with path.open("rb") as fh:
            (first,) = _U32.unpack(fh.read(4))
            if first in (magic.by_name["IMG_COMMON"], magic.by_name["IMG_SERVICE"]):
                fh.read(4)
            header = fh.tell()
            while raw := fh.read(4):
                start = fh.tell() - 4
                entry = pb.pipe_data_entry()
                entry.ParseFromString(fh.read(_U32.unpack(raw)[0]))
                end = fh.seek(entry.bytes, os.SEEK_CUR)
                spans.append(PipeDataSpan(int(entry.pipe_id), int(entry.bytes), start, end))
    except (DecodeError, struct.error) as exc:
        raise _damaged(path, exc) from exc
    if spans and spans[-1].end > path.stat().st_size:
        raise _damaged(path, ValueError("data cut short"))
    return header, spans


def _damaged(path: Path, exc: BaseException) -> CriuError:
    return CriuError("image read", reason=f"cannot decode {path.name}: {exc!r}",
                     hint="the image set is damaged; migrate again")
