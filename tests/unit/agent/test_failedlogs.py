"""What a failed migration keeps: the agent's own logs, each cut short, the newest few."""

from __future__ import annotations

import os
from pathlib import Path

from ferryman.agent import failedlogs


def test_only_the_agents_own_logs_are_kept_and_cut_to_their_tail(tmp_path: Path) -> None:
    work = tmp_path / "migrations" / "m1"
    (work / "pre-1").mkdir(parents=True)
    (work / "restore.log").write_bytes(b"x" * (failedlogs.MAX_LOG_BYTES + 10) + b"END")
    (work / "pre-1" / "page-server.log").write_text("set one\n")
    (work / "pages-1.img").write_bytes(b"\0" * 100)
    (work / "mine.log").write_text("a log no agent writes\n")
    (work / "lazy-pages.log").symlink_to(tmp_path / "elsewhere")
    failedlogs.keep(work, [work / "pre-1"], tmp_path / "failed")
    kept = tmp_path / "failed" / "m1"
    assert sorted(p.name for p in kept.iterdir()) == ["pre-1-page-server.log", "restore.log"]
    tail = (kept / "restore.log").read_bytes()
    assert len(tail) == failedlogs.MAX_LOG_BYTES
    assert tail.endswith(b"END")


def test_only_the_newest_failed_migrations_stay(tmp_path: Path) -> None:
    for i in range(5):
        d = tmp_path / f"m{i}"
        d.mkdir()
        os.utime(d, (1000 + i, 1000 + i))
    assert sorted(failedlogs.prune(tmp_path, keep_last=3)) == ["m0", "m1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m2", "m3", "m4"]


def test_nothing_to_keep_makes_no_directory(tmp_path: Path) -> None:
    work = tmp_path / "m1"
    work.mkdir()
    failedlogs.keep(work, [], tmp_path / "failed")
    assert not (tmp_path / "failed").exists()
