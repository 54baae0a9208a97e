"""Leaving the process without tearing the interpreter down.

A ``ferryman`` command has ~600 modules loaded when it ends; Python's own exit frees every
object of every one of them, ~40 ms on this machine after the work is done (a migration's
``total`` as its caller sees it). :func:`exit_now` does what an exit must: it runs the exit
handlers (``atexit``: logging's flush, temporary directories, futures' workers) and flushes
the standard streams, then leaves with ``os._exit``. While a thread that is not a daemon
still runs, the ordinary exit (which waits for it) is taken instead.
"""

from __future__ import annotations

import atexit
import os
import sys

TYPE_CHECKING = False  # typing costs ~4 ms to import, at the end of every command
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["exit_now"]

FLUSH_FAILED = 120  # Python's own exit status when flushing a standard stream fails


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` (see the module doc)."""
    threading = sys.modules.get("threading")  # no thread was started without it
    if threading is not None:
        main = threading.main_thread()
        if any(t is not main and not t.daemon and t.is_alive()
               for t in threading.enumerate()):
            sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, a closed stream
            code = code or FLUSH_FAILED
    os._exit(code)
