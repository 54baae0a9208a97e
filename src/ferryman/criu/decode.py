"""CRIU image files decoded with pycriu, its errors translated once here."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ferryman.errors import CriuError

FILES = "files.img"  # every file descriptor's entry (REG, FIFO, UNIXSK, ...)


def load_image(path: Path) -> dict[str, Any]:
    """The image at ``path`` as pycriu decodes it (``magic``, ``entries``)."""
    from google.protobuf.message import DecodeError
    from pycriu import images

    try:
        with path.open("rb") as fh:
            img: dict[str, Any] = images.load(fh)
    except (images.MagicException, DecodeError, KeyError, ValueError, struct.error) as exc:
        raise CriuError("image read", reason=f"cannot decode {path.name}: {exc!r}",
                        hint="the image set is damaged; migrate again") from exc
    return img


def image_entries(path: Path) -> Iterator[dict[str, Any]]:
    """The entries of the image at ``path``; none when there is no such file."""
    if path.exists():
        yield from load_image(path).get("entries") or []
