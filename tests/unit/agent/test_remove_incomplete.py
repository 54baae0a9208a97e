"""What an agent removes at its start of migrations an earlier agent left (destination_end)."""

from __future__ import annotations

from pathlib import Path

from ferryman.agent.destination_end import remove_incomplete
from ferryman.agent.orphans import write_outcome


def _migration(state: Path, name: str) -> Path:
    d = state / "migrations" / name
    d.mkdir(parents=True)
    (d / "pages-1.img").write_bytes(b"\0" * 4096)
    (d / "inventory.img").write_bytes(b"x")
    (d / "restore.log").write_text("criu said this\n")
    return d


def test_without_an_outcome_everything_goes(tmp_path: Path) -> None:
    d = _migration(tmp_path, "m1")
    assert remove_incomplete(tmp_path) == ["m1"]
    assert not d.exists()


def test_a_committed_one_that_died_cleaning_up_loses_its_images_not_its_logs(
        tmp_path: Path) -> None:
    d = _migration(tmp_path, "m2")
    write_outcome(tmp_path, "m2", "DONE 4321\n")
    assert remove_incomplete(tmp_path) == ["m2"]
    assert sorted(p.name for p in d.iterdir()) == ["restore.log"]
    assert remove_incomplete(tmp_path) == []  # nothing left to say next time


def test_a_held_copy_keeps_its_images(tmp_path: Path) -> None:
    d = _migration(tmp_path, "m3")
    write_outcome(tmp_path, "m3", "ORPHANED 4321 98765\n")
    assert remove_incomplete(tmp_path) == []
    assert (d / "pages-1.img").exists()
