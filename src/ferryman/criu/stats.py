"""CRIU's own statistics files (``stats-dump``, ``stats-restore``), decoded with pycriu."""

from __future__ import annotations

from pathlib import Path

DUMP_STATS = "stats-dump"
RESTORE_STATS = "stats-restore"


def warm_up() -> None:
    """Import pycriu's image decoders now (~50 ms), not inside a frozen window."""
    from pycriu import images  # noqa: F401

def read_stats(path: Path) -> dict[str, int]:
    """Counters and timings (microseconds) from a CRIU stats image; empty when absent."""
    if not path.exists():
        return {}
    from pycriu import images

    with path.open("rb") as fh:
        img = images.load(fh)
    entries = img.get("entries") or []
    if not entries:
        return {}
    entry = entries[0]
    section = entry.get("dump") or entry.get("restore") or {}
    return {str(k): int(v) for k, v in section.items() if isinstance(v, int)}
