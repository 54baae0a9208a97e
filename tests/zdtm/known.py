"""Known ferryman failures on tests that pass by hand: each names the issue item that fixes it.

The pytest module marks these strict xfail, so each turns into a failure once fixed (then
remove it here); the table shows the note beside the failure. Empty since main's fd50679
(issue 14 item 2): fifo and fifo_ro, cold, were the last ones.
"""

from __future__ import annotations

KNOWN: dict[tuple[str, str], str] = {}
