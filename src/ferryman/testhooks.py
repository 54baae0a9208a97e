"""Test-only: stop a process as it enters a migration phase, so a test can break it there.

``FERRYMAN_TEST_PAUSE_AT=PHASE:FLAG`` (unset, the default: inert). The first time the process
enters ``PHASE`` (a phase of migration/phases.py, as its progress lines name it), it writes
its PID to the file ``FLAG`` and blocks, as in a debugger, until the test removes that file
(at most ``LIMIT`` seconds): the test injects its fault meanwhile, at exactly that point.
``PHASE#N:FLAG`` pauses at the N-th entry instead (a phase entered again, as the source's
ITERATING is once per pre-dump: ``ITERATING#2`` is just before the second pre-dump).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)
ENV = "FERRYMAN_TEST_PAUSE_AT"
LIMIT = 120.0
POLL = 0.005


def pause_hook(environ: Mapping[str, str] = os.environ) -> Callable[[str], None] | None:
    """The hook for ``PhaseTracker(on_enter=...)`` that ``environ`` asks for, or None."""
    where, sep, flag = environ.get(ENV, "").partition(":")
    phase, _, nth = where.partition("#")
    if not sep or not phase or not flag or not (nth or "1").isdigit():
        return None
    entries = 0
    wanted = int(nth or "1")

    def hook(entered: str) -> None:
        nonlocal entries
        if entered != phase:
            return
        entries += 1
        if entries == wanted:
            wait_removed(Path(flag), where)

    return hook


def wait_removed(flag: Path, phase: str) -> None:
    """Write our PID to ``flag``, then block until it is gone (or ``LIMIT`` has passed)."""
    log.warning("test pause at %s until %s is removed", phase, flag)
    flag.write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + LIMIT
    while flag.exists() and time.monotonic() < deadline:
        time.sleep(POLL)


HIDE_ENV = "FERRYMAN_TEST_HIDE_FEATURES"


def hidden_features(environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    """Test-only: ``FERRYMAN_TEST_HIDE_FEATURES=a,b`` makes this process (a migrate or check
    CLI, whose node has no ``serve --test-hide-feature``) report features ``a`` and ``b``
    missing, e.g. ``mem_track_uffd`` to see pre-copy refused on a kernel that could track."""
    return frozenset(n for n in environ.get(HIDE_ENV, "").split(",") if n)
