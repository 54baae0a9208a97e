"""Which paths an agent answers a peer about (issue 16 finding 10): what any local user
could see, or what lies under the operator's --check-roots."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.host.exposure import answerable


@pytest.fixture
def tree() -> Iterator[Path]:
    """DIR/pub (searchable by others) with a public file, a private file and a private
    directory holding a public-looking file; DIR in /tmp (pytest's tmp_path is private)."""
    tmp_path = Path(tempfile.mkdtemp(prefix="ferryman-exposure-", dir="/tmp"))
    tmp_path.chmod(0o755)
    pub = tmp_path / "pub"
    pub.mkdir(mode=0o755)
    (pub / "lib.so").write_bytes(b"x")
    (pub / "lib.so").chmod(0o644)
    (pub / "shadow").write_bytes(b"secret")
    (pub / "shadow").chmod(0o640)
    private = pub / "home"
    private.mkdir(mode=0o700)
    (private / "notes.txt").write_bytes(b"x")
    (private / "notes.txt").chmod(0o644)
    (pub / "to-private").symlink_to(private / "notes.txt")
    try:
        yield tmp_path
    finally:
        shutil.rmtree(tmp_path)


def test_public_files_and_directories_are_answered(tree: Path) -> None:
    assert answerable(str(tree / "pub" / "lib.so"))
    assert answerable(str(tree / "pub"))
    assert answerable(str(tree / "pub" / "missing"))  # any local user sees it is missing


def test_private_paths_are_withheld_whether_or_not_they_exist(tree: Path) -> None:
    assert not answerable(str(tree / "pub" / "shadow"))
    assert not answerable(str(tree / "pub" / "home" / "notes.txt"))
    assert not answerable(str(tree / "pub" / "home" / "missing"))
    assert not answerable(str(tree / "pub" / "to-private"))  # resolved through the link
    assert not answerable("/etc/shadow")
    assert not answerable("relative/path")


def test_check_roots_open_up_their_trees(tree: Path) -> None:
    roots = (tree / "pub" / "home",)
    assert answerable(str(tree / "pub" / "home" / "notes.txt"), roots)
    assert answerable(str(tree / "pub" / "to-private"), roots)
    assert not answerable(str(tree / "pub" / "shadow"), roots)
