"""criu/dryrun.py: which dry-run failures are a race with live traffic (worth one retry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.criu.dryrun import DryRun, transient


def _run(ok: bool, reason: str | None) -> DryRun:
    return DryRun(ok=ok, freeze_ms=10.0, reason=reason, log_path=Path("/w/dry-run.log"),
                  image_bytes=0)


def test_libsoccrs_queue_race_is_transient() -> None:
    assert transient(_run(False, "recv failed (0, want 4): Invalid argument"))


@pytest.mark.parametrize("run", [
    _run(True, None),
    _run(False, "Can't dump unconnected socket"),
    _run(False, None),
])
def test_anything_else_is_not(run: DryRun) -> None:
    assert not transient(run)
