"""A live progress line on a terminal (rich); plain lines on stderr otherwise.

rich is imported only for a terminal: a migration run by a script or a service manager does
not pay its ~15 ms of imports before it starts.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

from ferryman.safetext import printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.console: Console | None = None
        if enabled and _terminal():
            from rich.console import Console

            console = Console(stderr=True)
            self.console = console if console.is_terminal else None
        self.t0 = time.monotonic()
        self._status: Status | None = None

    def __enter__(self) -> Progress:
        if self.console is not None:
            self._status = self.console.status("starting")
            self._status.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()

    def update(self, phase: str, detail: str) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.t0
        text = printable(f"[{elapsed:7.3f}s] {phase:<14} {detail}")
        if self._status is not None and self.console is not None:
            from rich.text import Text

            self._status.update(Text(text))  # plain text: peer text is no rich markup either
            self.console.log(Text(text), highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)


def _terminal() -> bool:
    """stderr is a terminal, or rich may be told to act as if (FORCE_COLOR, TTY_COMPATIBLE,
    TTY_INTERACTIVE set at all): rich's own ``is_terminal`` then decides."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or any(v in os.environ for v in ("FORCE_COLOR", "TTY_COMPATIBLE",
                                                  "TTY_INTERACTIVE"))
