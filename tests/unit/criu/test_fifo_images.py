"""CRIU's FIFO images: which FIFOs hold data, their paths, and leaving one's data out."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pycriu import images

from ferryman.criu.fifo_images import drop_fifo_data, fifo_paths, fifos_with_data
from ferryman.errors import CriuError

A, B = b"a" * 65536, bytes(range(256)) * 16


def write_image(path: Path, magic: str, entries: list[dict[str, object]]) -> None:
    with path.open("wb") as fh:
        images.dump({"magic": magic, "entries": entries}, fh)


def fifo_data(pipe_id: int, data: bytes) -> dict[str, object]:
    return {"pipe_id": pipe_id, "bytes": len(data), "size": 65536,
            "extra": base64.encodebytes(data).decode()}


@pytest.fixture
def image_set(tmp_path: Path) -> Path:
    write_image(tmp_path / "fifo-data.img", "FIFO_DATA",
                [fifo_data(100, A), fifo_data(200, B), fifo_data(300, b"")])
    write_image(tmp_path / "files.img", "FILES", [
        {"type": "REG", "id": 7, "reg": {"id": 7, "flags": 2, "pos": 0, "name": "/srv/a.fifo",
                                         "fown": {"uid": 0, "euid": 0, "signum": 0,
                                                  "pid_type": 0, "pid": 0}}},
        {"type": "FIFO", "id": 6, "fifo": {"id": 6, "pipe_id": 100, "regf_id": 7}},
    ])
    return tmp_path


def test_fifos_with_data_and_their_paths(image_set: Path) -> None:
    assert fifos_with_data(image_set) == {100, 200}  # 300 held nothing
    assert fifo_paths(image_set) == {100: "/srv/a.fifo"}


def test_dropping_one_fifos_data_keeps_the_others_byte_for_byte(image_set: Path) -> None:
    assert drop_fifo_data(image_set, {100}) == len(A)
    with (image_set / "fifo-data.img").open("rb") as fh:
        left = images.load(fh)["entries"]
    assert [e["pipe_id"] for e in left] == [200, 300]
    assert base64.decodebytes(left[0]["extra"].encode()) == B
    assert fifos_with_data(image_set) == {200}


def test_nothing_to_drop_leaves_the_file_untouched(image_set: Path) -> None:
    before = (image_set / "fifo-data.img").read_bytes()
    assert drop_fifo_data(image_set, {999}) == 0
    assert (image_set / "fifo-data.img").read_bytes() == before


def test_no_fifo_images_means_no_fifos(tmp_path: Path) -> None:
    assert fifos_with_data(tmp_path) == set()
    assert fifo_paths(tmp_path) == {}


def test_a_damaged_image_is_a_criu_error(tmp_path: Path) -> None:
    (tmp_path / "fifo-data.img").write_bytes(b"not an image")
    with pytest.raises(CriuError, match=r"fifo-data\.img"):
        fifos_with_data(tmp_path)
