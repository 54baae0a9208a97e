"""Who works in a state directory: one agent at a time, and each migration's directory its
worker's.

``STATE/agent.lock`` is held (flock) by the agent for as long as it runs: a second agent
started on the same state directory by mistake (by hand beside the systemd unit, say) stops
with a one-line error before it tidies anything up, instead of sweeping the first one's
migrations as "interrupted". ``STATE/migrations/ID/busy.lock`` is held by the process that
works on that migration in another process than the agent (``ferryman migrate`` on the
source shares the node's state directory): an agent starting meanwhile leaves it alone
(agent/destination_end.py ``remove_incomplete``). The kernel lets go of a lock when its
holder exits, however it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Final

from ferryman.errors import FerrymanError

AGENT_LOCK: Final = "agent.lock"
BUSY_LOCK: Final = "busy.lock"


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def hold_state_dir(state_dir: Path) -> int:
    """The agent's lock on ``state_dir`` (its descriptor, held until the process exits);
    FerrymanError when another agent holds it."""
    fd = _open(state_dir / AGENT_LOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FerrymanError(f"another ferryman agent runs with the state directory "
                            f"{state_dir}",
                            hint="stop that agent first, or give this one a --state-dir "
                                 "of its own") from None
    return fd


def hold_migration(workdir: Path) -> int:
    """The worker's lock on a migration directory (its descriptor, held until the process
    exits)."""
    fd = _open(workdir / BUSY_LOCK)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def in_use(workdir: Path) -> bool:
    """Whether a live process holds ``workdir``'s lock (:func:`hold_migration`)."""
    try:
        fd = os.open(workdir / BUSY_LOCK, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return False
