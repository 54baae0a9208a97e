"""The compatibility table: zdtm test by mode, by hand and ferryman, as markdown.

Cold and post-copy have a by-hand and a ferryman column; pre-copy and hybrid a ferryman column
only, their by-hand reference being the test moved cold by hand (tests/zdtm/movers.py), which
a note above the table says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tests.zdtm.movers import HAND_MODES, MODES, REFERENCE
from tests.zdtm.suite import Verdict

MODE_TITLES = {"cold": "cold", "postcopy": "post-copy", "precopy": "pre-copy",
               "hybrid": "hybrid"}
NO_HAND = ("{Modes} by hand: not possible on this kernel. It has no soft-dirty, so the dirty "
           "pages are tracked with one userfaultfd (async write-protect) per process, held from "
           "the first `criu pre-dump` to the final `criu dump --track-mem-uffd` "
           "(scripts/criu-patches/uffd-track-mem.patch); ferryman's agent holds them, CRIU typed "
           "by hand cannot (each command exits, and the kernel drops the protection with the "
           "last reference). Each {modes} cell is held to the test moved {ref} by hand instead: "
           "what moves {ref} by hand must move under ferryman in every mode.")
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
        head += ([f"{MODE_TITLES[m]}: by hand"] if m in HAND_MODES else []) + \
            [f"{MODE_TITLES[m]}: ferryman"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, what in names.items():
        row = [f"`{name}`", what]
        for m in modes:
            got = cells.get((name, m))
            hand = m in HAND_MODES
            if got is None:
                row += ["—"] * (1 + hand)
                continue
            if hand:
                row.append(cell(name, m, "by hand", got.by_hand))
            row.append(cell(name, m, "ferryman", got.ferryman))
        lines.append("| " + " | ".join(row) + " |")
    same = sum(v.by_hand is None and v.ferryman is None for v in verdicts)
    worse = [v for v in verdicts if v.regression]
    summary = (f"{len(names)} zdtm static tests in {len(modes)} modes: {same} of "
               f"{len(verdicts)} pass both by hand and under ferryman; "
               f"{sum(v.by_hand is not None for v in verdicts)} fail by hand (CRIU's reason "
               f"below); {len(worse)} pass by hand but fail under ferryman"
               f"{_known_part(worse, known)}.")
    body = [summary, ""]
    no_hand = [m for m in modes if m not in HAND_MODES]
    refs = sorted({REFERENCE[m] for m in no_hand})
    if no_hand:
        titles = " and ".join(MODE_TITLES[m] for m in no_hand)
        body += [NO_HAND.format(Modes=titles[0].upper() + titles[1:], modes=titles,
                                ref=" or ".join(MODE_TITLES[r] for r in refs)), ""]
    body += lines
    if notes:
        body += ["", *(f"{i}. {n}" for i, n in enumerate(notes, start=1))]
    return "\n".join(body) + "\n"
