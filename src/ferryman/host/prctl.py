"""Linux prctl bits we need: children that die with their parent."""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1

# the C library this process already has (find_library would run ldconfig on every start)
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """For ``preexec_fn``: SIGKILL this child when its parent (the agent) dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
