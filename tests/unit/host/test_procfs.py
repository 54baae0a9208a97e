"""procfs.tree on a fake /proc: processes that exit while it walks are left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.host import procfs


def _task(proc: Path, pid: int, children: str) -> None:
    d = proc / str(pid) / "task" / str(pid)
    d.mkdir(parents=True)
    (d / "children").write_text(children)


def test_tree_lists_parents_before_children(tmp_path: Path) -> None:
    _task(tmp_path, 1, "2 3")
    _task(tmp_path, 2, "4")
    _task(tmp_path, 3, "")
    _task(tmp_path, 4, "")
    assert procfs.tree(1, tmp_path) == [1, 2, 3, 4]


def test_tree_skips_a_child_already_reaped(tmp_path: Path) -> None:
    _task(tmp_path, 1, "2 3")
    _task(tmp_path, 3, "")
    assert procfs.tree(1, tmp_path) == [1, 2, 3]


def test_tree_skips_a_child_being_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process in the middle of exiting: /proc/PID is still there, but listing its tasks
    fails with ESRCH (what the kernel answers; seen in CI as ProcessLookupError)."""
    _task(tmp_path, 1, "2 3")
    _task(tmp_path, 2, "")
    _task(tmp_path, 3, "")
    dying = tmp_path / "2" / "task"
    real = Path.iterdir

    def iterdir(self: Path) -> Iterator[Path]:
        if self == dying:
            raise ProcessLookupError(3, "No such process", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    assert procfs.tree(1, tmp_path) == [1, 2, 3]
    with pytest.raises(procfs.NoSuchProcess):
        procfs.children(2, tmp_path)


def test_children_ignores_a_thread_that_exited(tmp_path: Path) -> None:
    _task(tmp_path, 1, "5")
    (tmp_path / "1" / "task" / "7").mkdir()  # a thread whose children file is gone
    assert procfs.children(1, tmp_path) == [5]
