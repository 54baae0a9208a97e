"""The destination's seal on its images (agent/imageseal.py): taken as files arrive, checked
before the restore. Real files in tmp_path; the writer is a thread appending as CRIU's page
server does."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import xxhash

from ferryman.agent.files import Receiver, file_messages
from ferryman.agent.imageseal import Follower, ImageSeal, file_sum, sha256_sums


def _xxh3(data: bytes) -> str:
    return f"xxh3_128:{xxhash.xxh3_128(data).hexdigest()}"


def _write_slowly(path: Path, data: bytes, pieces: int) -> threading.Thread:
    """Append ``data`` to ``path`` in ``pieces`` writes, a millisecond apart."""
    def run() -> None:
        step = -(-len(data) // pieces)
        with path.open("wb", buffering=0) as fh:
            for i in range(0, len(data), step):
                fh.write(data[i:i + step])
                time.sleep(0.001)
    t = threading.Thread(target=run)
    t.start()
    return t


def _damage(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_a_follower_hashes_what_a_page_server_writes_while_it_writes(tmp_path: Path) -> None:
    pages = os.urandom(3 << 20) + b"tail"
    pagemap = os.urandom(5000)
    writers = [_write_slowly(tmp_path / "pages-1.img", pages, 97),
               _write_slowly(tmp_path / "pagemap-7.img", pagemap, 5)]
    (tmp_path / "core-7.img").write_bytes(b"not the page server's")
    follower = Follower(tmp_path)
    for w in writers:
        w.join()
    sums = follower.finish()
    assert sums == {"pages-1.img": (len(pages), _xxh3(pages)),
                    "pagemap-7.img": (len(pagemap), _xxh3(pagemap))}


def test_a_page_file_damaged_after_arrival_is_named(tmp_path: Path) -> None:
    sets = tmp_path / "pre-1"
    sets.mkdir()
    follower = Follower(sets)
    _write_slowly(sets / "pages-1.img", os.urandom(1 << 20), 8).join()
    seal = ImageSeal(tmp_path)
    seal.add(sets, follower.finish())
    assert seal.page_files() == ["pre-1/pages-1.img"]
    assert seal.verify() == []
    _damage(sets / "pages-1.img", 4096 * 100 + 3)
    assert seal.verify() == ["pre-1/pages-1.img (its XXH3_128 differs)"]


def test_received_files_are_sealed_with_the_digest_checked_on_arrival(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "core-1.img").write_bytes(os.urandom(70000))
    (src / "empty.img").write_bytes(b"")
    dst = tmp_path / "dst"
    dst.mkdir()
    receiver = Receiver(dst)
    for p in sorted(src.iterdir()):
        for m in file_messages(p):
            receiver.take(m)
    receiver.check_complete(2)
    seal = ImageSeal(dst)
    seal.add(dst, sha256_sums(receiver.sums()))
    assert seal.other_files() == ["core-1.img", "empty.img"]
    assert seal.verify() == []
    with (dst / "core-1.img").open("ab") as fh:
        fh.write(b"x")
    (dst / "empty.img").unlink()
    bad = seal.verify()
    assert bad[0] == "core-1.img (70001 bytes, 70000 arrived)"
    assert bad[1].startswith("empty.img (")


def test_a_follower_closed_after_a_failure_seals_nothing_and_stops(tmp_path: Path) -> None:
    follower = Follower(tmp_path)
    (tmp_path / "pages-1.img").write_bytes(b"half")
    seal = ImageSeal(tmp_path)
    seal.follow(tmp_path)
    seal.close()
    follower.close()
    assert seal.sums == {}
    assert not [t for t in threading.enumerate() if t.name.startswith("seal ")]


def test_file_sum(tmp_path: Path) -> None:
    data = os.urandom((1 << 20) * 2 + 17)
    (tmp_path / "f").write_bytes(data)
    assert file_sum(tmp_path / "f", "sha256") == (
        len(data), f"sha256:{hashlib.sha256(data).hexdigest()}")
    assert file_sum(tmp_path / "f", "xxh3_128") == (len(data), _xxh3(data))


def test_a_received_file_changed_in_place_is_named(tmp_path: Path) -> None:
    (tmp_path / "mm-1.img").write_bytes(b"abcdef")
    seal = ImageSeal(tmp_path)
    seal.add(tmp_path, sha256_sums({"mm-1.img": (6, hashlib.sha256(b"abcdef").hexdigest())}))
    assert seal.verify() == []
    _damage(tmp_path / "mm-1.img", 2)
    assert seal.verify() == ["mm-1.img (its SHA256 differs)"]
