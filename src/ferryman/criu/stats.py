"""CRIU's own statistics files (``stats-dump``, ``stats-restore``), decoded with pycriu."""

from __future__ import annotations

import logging
from pathlib import Path

from ferryman.criu.decode import load_image
from ferryman.errors import CriuError

DUMP_STATS = "stats-dump"
RESTORE_STATS = "stats-restore"

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Import pycriu's image decoders now (~50 ms), not inside a frozen window."""
    from pycriu import images  # noqa: F401

def read_stats(path: Path) -> dict[str, int]:
    """Counters and timings (microseconds) from a CRIU stats image; empty when absent or
    unreadable (logged): a roll-back can read it while the dump that writes it still runs
    (a runc post-copy's CRIU, CI: "unpack requires a buffer of 4 bytes"), and the numbers
    only inform the report."""
    if not path.exists():
        return {}
    try:
        img = load_image(path)
    except (OSError, CriuError) as exc:
        log.warning("CRIU's statistics in %s are unreadable (%s): left out of the report",
                    path, exc)
        return {}
    entries = img.get("entries") or []
    if not entries:
        return {}
    entry = entries[0]
    section = entry.get("dump") or entry.get("restore") or {}
    return {str(k): int(v) for k, v in section.items() if isinstance(v, int)}
