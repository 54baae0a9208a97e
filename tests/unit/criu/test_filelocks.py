"""The restore asks CRIU for the file locks its images hold (filelocks.img), and only then."""

from __future__ import annotations

import io
from pathlib import Path

from pycriu import images

from ferryman.criu.filelocks import FILE_LOCKS_IMAGE, dumped_file_locks


def _locks(tmp_path: Path, entries: list[dict[str, object]]) -> Path:
    out = io.BytesIO()
    images.dump({"magic": "FILE_LOCKS", "entries": entries}, out)
    (tmp_path / FILE_LOCKS_IMAGE).write_bytes(out.getvalue())
    return tmp_path


def test_images_with_a_lock_are_restored_with_their_locks(tmp_path: Path) -> None:
    flock = {"flag": 2, "type": 1, "pid": 1, "fd": 3, "start": 0, "len": 0}
    assert dumped_file_locks(_locks(tmp_path, [flock]))


def test_images_without_locks_are_restored_without(tmp_path: Path) -> None:
    assert not dumped_file_locks(tmp_path)  # no image: a tree that held none
    assert not dumped_file_locks(_locks(tmp_path, []))


def test_a_damaged_image_is_restored_with_locks_asked_for(tmp_path: Path) -> None:
    """CRIU then reads the image itself and says what is wrong with it."""
    (tmp_path / FILE_LOCKS_IMAGE).write_bytes(b"\x01\x02")
    assert dumped_file_locks(tmp_path)
