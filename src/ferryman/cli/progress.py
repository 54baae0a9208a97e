"""A live progress line on a terminal (rich); plain lines on stderr otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.status import Status
from rich.text import Text

from ferryman.safetext import printable


class Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.t0 = time.monotonic()
        self._status: Status | None = None

    def __enter__(self) -> Progress:
        if self.enabled and self.console.is_terminal:
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
        if self._status is not None:
            self._status.update(Text(text))  # plain text: peer text is no rich markup either
            self.console.log(Text(text), highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)
