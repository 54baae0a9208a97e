"""fs/snapshot.py: which changes under a synced directory it notices (and that reading is
not one)."""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path

from ferryman.fs.snapshot import differences, take


def _tree(root: Path) -> Path:
    (root / "rootfs" / "etc").mkdir(parents=True)
    (root / "rootfs" / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "rootfs" / "data").write_bytes(b"\0" * 8192)
    (root / "rootfs" / "sh").symlink_to("busybox")
    (root / "config.json").write_text("{}")
    return root


def _changed(root: Path, change: Callable[[], object]) -> list[str]:
    before = take([root])
    time.sleep(0.02)  # past the file system's timestamp granularity
    change()
    return differences(before, take([root]))


def test_nothing_changed_and_reading_is_no_change(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert _changed(root, (root / "rootfs" / "etc" / "hosts").read_text) == []


def test_a_write_an_append_and_a_chmod_show(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    hosts = root / "rootfs" / "etc" / "hosts"
    assert _changed(root, lambda: hosts.write_text("127.0.0.1 other\n")) == [str(hosts)]
    assert _changed(root, lambda: hosts.chmod(0o600)) == [str(hosts)]


def test_a_write_through_a_shared_mapping_shows(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    data = root / "rootfs" / "data"

    def poke() -> None:
        with data.open("r+b") as fh, mmap.mmap(fh.fileno(), 0) as m:
            m[100] = 1
            m.flush()

    assert _changed(root, poke) == [str(data)]


def test_created_removed_and_renamed_entries_show_with_their_directory(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    etc = root / "rootfs" / "etc"
    assert _changed(root, lambda: (etc / "new").write_text("x")) == [str(etc), str(etc / "new")]
    assert _changed(root, (etc / "new").unlink) == [str(etc), str(etc / "new")]
    moved = _changed(root, lambda: os.rename(etc / "hosts", etc / "hosts2"))
    assert moved == [str(etc), str(etc / "hosts"), str(etc / "hosts2")]


def test_a_symlink_is_not_followed_and_a_missing_root_is_empty(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    snap = take([root, tmp_path / "absent"])
    assert str(root / "rootfs" / "sh") in snap  # the link itself, its target does not exist
    assert not any(p.startswith(str(tmp_path / "absent")) for p in snap)
    assert differences({"a": (1,) * 8}, {"a": (1,) * 8, "b": (2,) * 8}) == ["b"]  # type: ignore[dict-item]
