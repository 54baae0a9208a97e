"""The pre-flight verdict: rows of pass/warn/fail from both nodes, merged into allowed modes.

Pure: no I/O. Each side turns what it can see into :class:`Row` objects (the source: the
workload, its own CRIU and kernel, a dry-run dump; the destination: everything that must hold
*there*). :func:`merge` joins them into a :class:`Verdict`:

* a row concerns the ``modes`` it names (a kernel feature only post-copy needs concerns
  ``postcopy`` and ``hybrid``; a missing file concerns every mode);
* a FAIL row removes its modes; ``allowed_modes`` are the modes both ends implement that no
  FAIL row removed. The workload can move when one is left (or the one asked for is);
* a WARN row does not remove a mode, but ``ferryman migrate`` refuses a mode with warnings
  unless ``--force`` (:meth:`Verdict.blocking`). A WARN row with no modes is a note: shown,
  never blocking.

Rows travel from the destination as JSON (:func:`rows_to_json` / :func:`rows_from_json`); the
reader checks every field and raises RemoteProtocolError on anything unexpected.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ferryman.errors import RemoteProtocolError
from ferryman.mode import LAZY_MODES, MODES, PRE_COPY_MODES, Mode

__all__ = [
    "ALL_MODES",
    "LAZY_MODES",
    "MODES",
    "SIDES",
    "Row",
    "Status",
    "Verdict",
    "merge",
    "rows_from_json",
    "rows_to_json",
]

ALL_MODES: Final = frozenset(MODES)
TRACKING_MODES: Final = PRE_COPY_MODES
SIDES: Final = ("source", "destination", "both")
CHECK_RE: Final = re.compile(r"[a-z][a-z0-9_.-]{0,47}")
MAX_LINE_CHARS: Final = 400
MAX_ROWS: Final = 64
REPORT_VERSION: Final = 1

# The order rows are shown in, by the first part of their check id.
_ORDER: Final = ("workload", "criu", "kernel", "cpu", "pids", "addresses", "ports", "files",
                 "memory", "disk", "dump")


class Status(enum.Enum):
    PASS = "pass"  # noqa: S105 - a check outcome, not a password
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the verdict: what was checked, where, the outcome and how to fix it.

    ``detail`` says what was found, ``fix`` what to do (empty only for PASS). Both are single
    lines. ``modes`` are the migration modes whose outcome this row decides.
    """

    check: str
    side: str
    status: Status
    detail: str
    fix: str = ""
    modes: frozenset[Mode] = ALL_MODES

    def __post_init__(self) -> None:
        if not isinstance(self.check, str) or CHECK_RE.fullmatch(self.check) is None:
            raise ValueError(f"bad check id {self.check!r}")
        if self.side not in SIDES:
            raise ValueError(f"bad side {self.side!r}")
        if not isinstance(self.status, Status):
            raise TypeError(f"bad status {self.status!r}")
        for name in ("detail", "fix"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_LINE_CHARS or "\n" in value:
                raise ValueError(f"{name} must be one line of at most {MAX_LINE_CHARS} chars")
        if self.status is not Status.PASS and not self.fix:
            raise ValueError(f"a {self.status.value} row needs a fix: {self.check}")
        if not isinstance(self.modes, frozenset) or not self.modes <= ALL_MODES:
            raise ValueError(f"bad modes {self.modes!r}")
        object.__setattr__(self, "modes", frozenset(Mode(m) for m in self.modes))

    def concerns(self, mode: Mode) -> bool:
        return mode in self.modes

    def to_json(self) -> dict[str, object]:
        return {"check": self.check, "side": self.side, "status": self.status.value,
                "detail": self.detail, "fix": self.fix,
                "modes": [m for m in MODES if m in self.modes]}


def _sort_key(row: Row) -> int:
    head = row.check.split(".", 1)[0]
    return _ORDER.index(head) if head in _ORDER else len(_ORDER)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Both sides' rows, the modes both ends implement, and the mode asked for (if any)."""

    rows: tuple[Row, ...]
    supported: tuple[Mode, ...]
    requested: Mode | None = None

    @property
    def allowed_modes(self) -> tuple[Mode, ...]:
        """Implemented modes that no FAIL row rules out, in :data:`MODES` order."""
        failed = {m for r in self.rows if r.status is Status.FAIL for m in r.modes}
        return tuple(m for m in MODES if m in self.supported and m not in failed)

    @property
    def clean_modes(self) -> tuple[Mode, ...]:
        """Allowed modes that no WARN row concerns either (no ``--force`` needed)."""
        warned = {m for r in self.rows if r.status is Status.WARN for m in r.modes}
        return tuple(m for m in self.allowed_modes if m not in warned)

    @property
    def can_move(self) -> bool:
        """The mode asked for (or, with none asked for, some mode) is allowed."""
        if self.requested is not None:
            return self.requested in self.allowed_modes
        return bool(self.allowed_modes)

    def failures(self, mode: Mode | None = None) -> list[Row]:
        """FAIL rows (those concerning ``mode``, or all of them)."""
        return [r for r in self.rows if r.status is Status.FAIL
                and (mode is None or r.concerns(mode))]

    def warnings(self, mode: Mode | None = None) -> list[Row]:
        """WARN rows (those concerning ``mode``, or all of them, notes included)."""
        return [r for r in self.rows if r.status is Status.WARN
                and (mode is None or r.concerns(mode))]

    def blocking(self, mode: Mode, *, force: bool) -> list[Row]:
        """The rows that stop ``ferryman migrate --mode MODE``: its failures, and its
        warnings unless ``force``. Empty when the migration may go ahead."""
        rows = self.failures(mode)
        if not force:
            rows += self.warnings(mode)
        return rows

    def auto_candidates(self, *, no_postcopy: bool = False) -> tuple[Mode, ...]:
        """What ``--mode auto`` may choose from: the allowed modes (without the lazy ones
        when the user said ``--no-postcopy``), the warning-free ones first."""
        allowed = [m for m in self.allowed_modes if not (no_postcopy and m.lazy)]
        clean = [m for m in allowed if m in self.clean_modes]
        return tuple(clean + [m for m in allowed if m not in clean])

    def to_json(self) -> dict[str, object]:
        return {
            "can_move": self.can_move,
            "requested_mode": self.requested,
            "allowed_modes": list(self.allowed_modes),
            "clean_modes": list(self.clean_modes),
            "supported_modes": list(self.supported),
            "rows": [r.to_json() for r in self.rows],
        }


def merge(source_rows: Iterable[Row], destination_rows: Iterable[Row],
          supported: Iterable[str], requested: str | None = None) -> Verdict:
    """One verdict from both sides' rows; ``supported`` are the modes both ends implement."""
    if requested is not None and requested not in MODES:
        raise ValueError(f"unknown mode {requested!r}")
    modes = tuple(m for m in MODES if m in set(supported))
    rows = sorted([*source_rows, *destination_rows], key=_sort_key)
    return Verdict(rows=tuple(rows), supported=modes,
                   requested=None if requested is None else Mode(requested))


# -- the destination's rows on the wire ---------------------------------------------------

def rows_to_json(node: str, modes: Sequence[Mode], rows: Sequence[Row]) -> str:
    """The CheckReport text: the destination's name, the modes it implements, its rows."""
    return json.dumps({"v": REPORT_VERSION, "node": node, "modes": list(modes),
                       "rows": [r.to_json() for r in rows]},
                      ensure_ascii=False, separators=(",", ":"))


def _bad(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad CheckReport: {why}")


def _load_object(text: str) -> dict[str, object]:
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise _bad("not a JSON object")
    return obj


def _no_constant(text: str) -> object:
    raise ValueError(f"{text} is not allowed")


def _row_from_json(obj: object) -> Row:
    if not isinstance(obj, dict) or set(obj) != {"check", "side", "status", "detail", "fix",
                                                 "modes"}:
        raise _bad(f"a row must have exactly check, side, status, detail, fix, modes: {obj!r:.200}")
    modes, status = obj["modes"], obj["status"]
    if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
        raise _bad("row modes must be a list of strings")
    if not isinstance(status, str) or status not in {s.value for s in Status}:
        raise _bad(f"bad row status {status!r:.40}")
    try:
        return Row(check=obj["check"], side=obj["side"], status=Status(status),
                   detail=obj["detail"], fix=obj["fix"],
                   modes=frozenset(Mode(m) for m in modes))
    except (ValueError, TypeError) as exc:
        raise _bad(str(exc)) from exc


def rows_from_json(text: str) -> tuple[str, tuple[Mode, ...], tuple[Row, ...]]:
    """(node, modes, rows) from a CheckReport; RemoteProtocolError when malformed."""
    obj = _load_object(text)
    if set(obj) != {"v", "node", "modes", "rows"}:
        raise _bad(f"keys must be v, node, modes, rows, got {sorted(obj)}")
    if obj["v"] != REPORT_VERSION:
        raise _bad(f"unknown version {obj['v']!r}")
    node, modes, rows = obj["node"], obj["modes"], obj["rows"]
    if not isinstance(node, str) or not 0 < len(node) <= 255:
        raise _bad("node must be a non-empty string")
    if not isinstance(modes, list) or not all(m in MODES for m in modes):
        raise _bad(f"modes must be a list of {MODES}")
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        raise _bad(f"rows must be a list of at most {MAX_ROWS}")
    return node, tuple(Mode(m) for m in modes), tuple(_row_from_json(r) for r in rows)
