"""The link's rate to each destination, remembered for a while in the state directory.

A link test (agent/link.py) costs tens of milliseconds before every freeze, on CPUs the dry
run needs at the same time, and a link does not change its rate from one migration to the
next. So each rate measured (``ferryman check`` times it alongside its dry run; a migration
that needed one times it before its Plan) is written to ``STATE/links.json`` with the time it
was measured, under the destination's node name and endpoint, and a migration to the same
destination within :data:`MAX_AGE_S` takes it from there instead of timing the link again.
The report says which (``link_source``). ``--link-mbps`` overrides both.

A memo that cannot be read (missing, damaged, from the future, of another shape) is no memo:
the link is timed. One that cannot be written is logged: the migration goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

MEMO_FILE: Final = "links.json"
MAX_AGE_S: Final = 600.0  # a rate older than this is timed again
MAX_ENTRIES: Final = 256  # destinations kept (the most recent)


@dataclass(frozen=True, slots=True)
class Remembered:
    """A rate measured ``age_s`` seconds ago by ``by`` (``check`` or ``migrate``); None: the
    link was too fast for the test to time."""

    bytes_per_s: float | None
    age_s: float
    by: str

    def describe(self) -> str:
        return f"remembered: timed by {self.by} {self.age_s:.0f} s ago"


def memo_key(node: str, host: str, port: int) -> str:
    """The destination as the memo names it: its node name (from its certificate) and the
    endpoint reached, so that another node behind the same address is timed anew."""
    return f"{node}@{host}:{port}"


def fresh(entry: object, now: float, max_age_s: float = MAX_AGE_S) -> Remembered | None:
    """``entry`` (one value of the memo) if well-formed and measured within ``max_age_s``
    before ``now``; else None."""
    if not isinstance(entry, dict):
        return None
    rate, at, by = entry.get("bytes_per_s"), entry.get("at"), entry.get("by")
    if not isinstance(at, int | float) or isinstance(at, bool) or not isinstance(by, str):
        return None
    if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool)
                             or not rate > 0):
        return None
    age = now - at
    if not 0 <= age <= max_age_s:
        return None
    return Remembered(None if rate is None else float(rate), age, by)


def updated(memo: object, key: str, bytes_per_s: float | None, *, by: str, now: float,
            max_age_s: float = MAX_AGE_S) -> dict[str, object]:
    """The memo with ``key`` set, without entries too old to be used (at most
    :data:`MAX_ENTRIES`, the newest)."""
    kept: dict[str, object] = {}
    if isinstance(memo, dict):
        kept = {k: v for k, v in memo.items()
                if isinstance(k, str) and k != key and fresh(v, now, max_age_s) is not None}
    kept[key] = {"bytes_per_s": bytes_per_s, "at": now, "by": by}
    if len(kept) > MAX_ENTRIES:
        newest = sorted(kept, key=lambda k: _at(kept[k]), reverse=True)[:MAX_ENTRIES]
        kept = {k: kept[k] for k in newest}
    return kept


def _at(entry: object) -> float:
    at = entry.get("at") if isinstance(entry, dict) else None
    return float(at) if isinstance(at, int | float) else 0.0


def _read(state_dir: Path) -> object:
    try:
        return json.loads((state_dir / MEMO_FILE).read_text())
    except (OSError, ValueError):
        return None


def recall(state_dir: Path, key: str, now: float | None = None) -> Remembered | None:
    """The fresh rate remembered for ``key``, or None."""
    memo = _read(state_dir)
    if not isinstance(memo, dict):
        return None
    return fresh(memo.get(key), time.time() if now is None else now)


def remember(state_dir: Path, key: str, bytes_per_s: float | None, *, by: str,
             now: float | None = None) -> None:
    """Write the rate just measured for ``key`` (atomically: a reader sees the old memo or
    the new one); an error is logged, not raised."""
    memo = updated(_read(state_dir), key, bytes_per_s, by=by,
                   now=time.time() if now is None else now)
    tmp: Path | None = None
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(prefix=f".{MEMO_FILE}.", dir=state_dir)
        tmp = Path(name)
        with os.fdopen(fd, "w") as fh:
            json.dump(memo, fh)
        tmp.replace(state_dir / MEMO_FILE)
        tmp = None
    except OSError as exc:
        log.warning("cannot remember the link's rate in %s: %s", state_dir / MEMO_FILE, exc)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
