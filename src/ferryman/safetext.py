"""Text from a peer made safe for a terminal and a log: control characters shown, not obeyed.

Peer messages (Hello.node, Abort.reason, Refused/Error/Failed text, pre-flight rows) may carry
any character. Printed raw they move the cursor, clear the screen, set the window title or
add a forged line to a log. :func:`printable` escapes every control, format (bidi override,
zero-width) and separator character the way Python's ``repr`` does (``\\x1b``, ``\\n``,
``\\u202e``). The CLI applies it to everything it prints and, through
:class:`PrintableFormatter`, to every log line: one place, whatever the call site logged.
"""

from __future__ import annotations

import logging
import unicodedata

# Cc: C0/C1 controls (ESC, CR, LF, BEL, CSI ...), Cf: format (bidi overrides, zero-width),
# Zl/Zp: line and paragraph separators, Cs: lone surrogates.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(ch: str) -> str:
    if unicodedata.category(ch) not in _UNSAFE:
        return ch
    return ch.encode("unicode_escape", errors="backslashreplace").decode("ascii")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with its unsafe characters escaped; ``keep_newlines``: ``\\n`` stays (a
    multi-line table whose every line is then safe)."""
    if text.isprintable():  # the common case: nothing to do
        return text
    if keep_newlines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return "".join(_escape(ch) for ch in text)


class PrintableFormatter(logging.Formatter):
    """Every log line stays one line of plain text, whatever its arguments held (tracebacks,
    which the formatter appends itself, keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return printable(super().formatMessage(record))
