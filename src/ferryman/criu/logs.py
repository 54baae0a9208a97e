"""Reading CRIU's log files: the first error line is usually the reason."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

# Printed by every criu run without CAP_SYS_RESOURCE; harmless (docs/ARCHITECTURE.md, "CRIU facts").
_HARMLESS = ("Can't setup RLIMIT_NOFILE",)
# A restored task's lines carry its PID, right-aligned ("     3: Error (...)"), with or
# without the timestamp that log levels >= 4 put first.
_ERROR = re.compile(r"^\s*(?:\(\s*[\d.]+\)\s+)?(?:\d+:\s+)?Error \([^)]*\):\s*(?P<msg>.*)$")


def first_error_in(lines: Iterable[str]) -> str | None:
    """The message of the first ``Error (...)`` line among ``lines`` (CRIU's log), if any."""
    for line in lines:
        m = _ERROR.match(line.rstrip("\n"))
        if m and not any(h in m.group("msg") for h in _HARMLESS):
            return m.group("msg").strip()
    return None


def first_error(log_path: Path) -> str | None:
    """The message of the first ``Error (...)`` line of a CRIU log file, if any."""
    try:
        with log_path.open(errors="replace") as fh:
            return first_error_in(fh)
    except FileNotFoundError:
        return None


def tail(log_path: Path, max_bytes: int = 8192) -> str:
    """The last ``max_bytes`` of a log (for reports and remote failure messages)."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
