"""Known ferryman failures on tests that pass by hand: each names the issue item that fixes it.

The pytest module marks these strict xfail, so each turns into a failure once fixed (then
remove it here); the table shows the note beside the failure.
"""

from __future__ import annotations

_FIFO = ("issue 14 item 2: a FIFO with unread data fails to restore under ferryman (Error "
         "splicing data: Resource temporarily unavailable)")

KNOWN: dict[tuple[str, str], str] = {
    ("fifo", "cold"): _FIFO,
    ("fifo_ro", "cold"): _FIFO,
}
