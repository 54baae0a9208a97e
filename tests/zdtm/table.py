"""The compatibility table: zdtm test by mode, by hand and ferryman, as markdown."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tests.zdtm.movers import MODES
from tests.zdtm.suite import Verdict

MODE_TITLES = {"cold": "cold", "postcopy": "post-copy"}
_LOG = re.compile(r"\s*\(log:? [^)]*\)")
_OBJECT_ID = re.compile(r"\b0x[0-9a-f]+: ")  # CRIU's ids of pipes, files: differ every run
_FROZEN = re.compile(r"\s*\(frozen \d+ ms\)")  # the dry run's freeze: differs every run
MAX_REASON = 240


def short(reason: str) -> str:
    """A reason for the table: without what differs every run (log paths in a temp dir, CRIU's
    object ids, the dry run's freeze), one line, capped."""
    for noise in (_LOG, _OBJECT_ID, _FROZEN):
        reason = noise.sub("", reason)
    text = " ".join(reason.split()).replace("|", "/")
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 1] + "…"


def _known_part(worse: Sequence[Verdict], known: Mapping[tuple[str, str], str]) -> str:
    n = sum((v.entry.name, v.mode) in known for v in worse)
    return f" ({n} of them known, with the issue item that fixes them)" if n else ""


def render(verdicts: Sequence[Verdict], known: Mapping[tuple[str, str], str] | None = None
           ) -> str:
    """Rows in the order run; failures are footnoted with CRIU's or ferryman's reason, and
    ferryman's known ones with the note of ``known`` ((test, mode): issue item)."""
    known = known or {}
    names: dict[str, str] = {}
    cells: dict[tuple[str, str], Verdict] = {}
    for v in verdicts:
        names.setdefault(v.entry.name, v.entry.what)
        cells[v.entry.name, v.mode] = v
    modes = [m for m in MODES if any(k[1] == m for k in cells)]
    notes: list[str] = []

    def cell(name: str, mode: str, tool: str, reason: str | None) -> str:
        if reason is None:
            return "pass"
        note = known.get((name, mode))
        extra = f" — known: {note}" if note and tool == "ferryman" else ""
        notes.append(f"{name}, {MODE_TITLES[mode]}, {tool}: {short(reason)}{extra}")
        return f"**fail** [{len(notes)}]"

    head = ["test", "what it covers"]
    for m in modes:
        head += [f"{MODE_TITLES[m]}: by hand", f"{MODE_TITLES[m]}: ferryman"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, what in names.items():
        row = [f"`{name}`", what]
        for m in modes:
            got = cells.get((name, m))
            row += (["—", "—"] if got is None else
                    [cell(name, m, "by hand", got.by_hand),
                     cell(name, m, "ferryman", got.ferryman)])
        lines.append("| " + " | ".join(row) + " |")
    same = sum(v.by_hand is None and v.ferryman is None for v in verdicts)
    worse = [v for v in verdicts if v.regression]
    summary = (f"{len(names)} zdtm static tests in {len(modes)} modes: {same} of "
               f"{len(verdicts)} pass both by hand and under ferryman; "
               f"{sum(v.by_hand is not None for v in verdicts)} fail by hand (CRIU's reason "
               f"below); {len(worse)} pass by hand but fail under ferryman"
               f"{_known_part(worse, known)}.")
    body = [summary, "", *lines]
    if notes:
        body += ["", *(f"{i}. {n}" for i, n in enumerate(notes, start=1))]
    return "\n".join(body) + "\n"
