"""The test-only phase pause (testhooks.py): inert unless asked, blocks once at its phase."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ferryman import testhooks
from ferryman.migration.phases import SOURCE_TABLE, PhaseTracker, SourcePhase


def test_inert_without_the_variable() -> None:
    assert testhooks.pause_hook({}) is None
    assert testhooks.pause_hook({testhooks.ENV: "COMMITTED"}) is None  # no flag file


def test_pauses_once_at_its_phase_until_the_flag_is_removed(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    hook = testhooks.pause_hook({testhooks.ENV: f"PLANNED:{flag}"})
    assert hook is not None
    t = PhaseTracker(SOURCE_TABLE, SourcePhase.HELLO, time.monotonic, on_enter=hook)
    assert not flag.exists()  # HELLO is not the phase asked for
    removed = threading.Timer(0.2, flag.unlink)
    removed.start()
    t0 = time.monotonic()
    t.advance(SourcePhase.PLANNED)
    assert time.monotonic() - t0 >= 0.2
    assert not flag.exists()
    removed.join()
    hook("PLANNED")  # a second entry does not pause again
    assert not flag.exists()


def test_pauses_at_the_nth_entry_of_a_phase_entered_again(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    hook = testhooks.pause_hook({testhooks.ENV: f"ITERATING#2:{flag}"})
    assert hook is not None
    t = PhaseTracker(SOURCE_TABLE, SourcePhase.HELLO, time.monotonic, on_enter=hook)
    t.advance(SourcePhase.PLANNED)
    t.advance(SourcePhase.ITERATING)
    assert not flag.exists()  # the first pre-dump runs on
    removed = threading.Timer(0.2, flag.unlink)
    removed.start()
    t0 = time.monotonic()
    t.advance(SourcePhase.ITERATING)
    assert time.monotonic() - t0 >= 0.2
    removed.join()
    t.advance(SourcePhase.ITERATING)  # the third does not pause
    assert not flag.exists()
    assert testhooks.pause_hook({testhooks.ENV: f"ITERATING#x:{flag}"}) is None
