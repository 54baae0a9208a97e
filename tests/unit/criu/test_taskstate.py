"""Which tasks CRIU dumped stopped, from its pstree and core images (written by pycriu)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ferryman.criu.taskstate import TASK_STOPPED, stopped_pids
from tests.unit.criu.test_fifo_images import write_image

TASK_ALIVE = 1


def core(state: int) -> dict[str, object]:
    return {"mtype": "X86_64", "tc": {"task_state": state, "exit_code": 0, "personality": 0,
                                      "flags": 0, "blk_sigset": 0, "comm": "t"}}


def tree(d: Path, states: dict[int, int]) -> None:
    write_image(d / "pstree.img", "PSTREE",
                [{"pid": p, "ppid": 0 if p == 1 else 1, "pgid": 1, "sid": 1} for p in states])
    for pid, state in states.items():
        write_image(d / f"core-{pid}.img", "CORE", [core(state)])


def test_only_the_stopped_ones(tmp_path: Path) -> None:
    tree(tmp_path, {1: TASK_ALIVE, 2: TASK_STOPPED, 3: TASK_ALIVE, 4: TASK_STOPPED})
    assert stopped_pids(tmp_path) == {2, 4}


def test_no_images_none_stopped(tmp_path: Path) -> None:
    assert stopped_pids(tmp_path) == frozenset()


def test_unreadable_images_continue_everything(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    tree(tmp_path, {1: TASK_ALIVE, 2: TASK_STOPPED})
    (tmp_path / "core-2.img").write_bytes(b"\x00" * 12)
    with caplog.at_level(logging.WARNING):
        assert stopped_pids(tmp_path) == frozenset()
    assert "continuing them all" in caplog.text
