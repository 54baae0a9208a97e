"""The compatibility table: zdtm test by mode, by hand and ferryman, as markdown.

Cold and post-copy have a by-hand and a ferryman column; pre-copy and hybrid on the host a
ferryman column only, their by-hand reference being the test moved cold by hand
(tests/zdtm/movers.py), which a note above the table says; pre-copy and hybrid in the QEMU
guests (tests/zdtm/guests.py) a by-hand and a ferryman column again. ``parse`` reads a table
back (so that one run can replace some modes' columns and keep the others), ``totals`` is the
per-mode summary README's "What can move" shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tests.zdtm.catalog import Entry
from tests.zdtm.movers import ALL_MODES, GUEST_MODES, HAND_MODES, REFERENCE
from tests.zdtm.suite import Verdict

MODE_TITLES = {"cold": "cold", "postcopy": "post-copy", "precopy": "pre-copy",
               "hybrid": "hybrid", "vm-precopy": "pre-copy in guests",
               "vm-hybrid": "hybrid in guests"}
TOOLS = ("by hand", "ferryman")
NO_HAND = ("{Modes} by hand: not possible on this host's kernel. It has no soft-dirty, so the "
           "dirty pages are tracked with one userfaultfd (async write-protect) per process, held "
           "from the first `criu pre-dump` to the final `criu dump --track-mem-uffd` "
           "(scripts/criu-patches/uffd-track-mem.patch); ferryman's agent holds them, CRIU typed "
           "by hand cannot (each command exits, and the kernel drops the protection with the "
           "last reference). Each {modes} cell is held to the test moved {ref} by hand instead: "
           "what moves {ref} by hand must move under ferryman in every mode.")
GUESTS = ("{Modes}: the same tests between two QEMU guests (tests/vm, Debian's {kernel} kernel, "
          "which has soft-dirty), moved once by CRIU typed by hand (`criu page-server` on the "
          "destination per iteration, two `criu pre-dump --track-mem`, the final `criu dump "
          "--prev-images-dir --track-mem`, to the page server or `--lazy-pages`; CRIU's TLS) and "
          "once by `ferryman migrate` (tests/zdtm/guests.py).")
GUEST_KERNEL = "6.1"  # tests/vm/make-vm.sh: bookworm's linux-image-amd64
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
    modes = [m for m in ALL_MODES if any(k[1] == m for k in cells)]
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
    guests = [m for m in modes if m in GUEST_MODES]
    if guests:
        titles = " and ".join(MODE_TITLES[m] for m in guests)
        body += [GUESTS.format(Modes=titles[0].upper() + titles[1:], kernel=GUEST_KERNEL), ""]
    body += lines
    if notes:
        body += ["", *(f"{i}. {n}" for i, n in enumerate(notes, start=1))]
    return "\n".join(body) + "\n"


_CELL = re.compile(r"^\*\*fail\*\* \[(\d+)\]$")
_NOTE = re.compile(r"^(\d+)\. (.*)$")


def parse(text: str, entries: Sequence[Entry]) -> list[Verdict]:
    """The verdicts of a table ``render`` wrote (reasons as the table shortened them); tests
    no longer in ``entries`` are dropped. A pre-copy or hybrid cell without a by-hand column
    gets its reference's (cold by hand)."""
    by_name = {e.name: e for e in entries}
    notes: dict[str, str] = {}
    head: list[str] = []
    rows: list[list[str]] = []
    for line in text.splitlines():
        if m := _NOTE.match(line):
            notes[m.group(1)] = m.group(2)
        elif line.startswith("| test |"):
            head = [c.strip() for c in line.strip("|").split("|")]
        elif line.startswith("| `") and head:
            rows.append([c.strip() for c in line.strip("|").split("|")])
    columns: dict[str, tuple[str, str]] = {}
    for i, title in enumerate(head):
        for mode in ALL_MODES:
            for tool in TOOLS:
                if title == f"{MODE_TITLES[mode]}: {tool}":
                    columns[str(i)] = (mode, tool)

    def reason(name: str, mode: str, tool: str, cell: str) -> str | None:
        m = _CELL.match(cell)
        if m is None:
            return None
        note = notes.get(m.group(1), "")
        note = note.removeprefix(f"{name}, {MODE_TITLES[mode]}, {tool}: ")
        return note.split(" — known: ", 1)[0]

    out: list[Verdict] = []
    for row in rows:
        name = row[0].strip("`")
        if name not in by_name:
            continue
        got: dict[tuple[str, str], str | None] = {}
        for i, cell in enumerate(row):
            if str(i) in columns and cell != "—":
                mode, tool = columns[str(i)]
                got[mode, tool] = reason(name, mode, tool, cell)
        for mode in ALL_MODES:
            if (mode, "ferryman") not in got:
                continue
            hand_key = (REFERENCE[mode], "by hand")
            out.append(Verdict(by_name[name], mode, got.get(hand_key),
                               got[mode, "ferryman"]))
    return out


def totals(verdicts: Sequence[Verdict]) -> str:
    """Per mode: tests, passing by hand, passing under ferryman, passing by hand but not under
    ferryman (markdown)."""
    lines = ["| mode | tests | by hand: pass | ferryman: pass "
             "| pass by hand, fail under ferryman |", "|---|---|---|---|---|"]
    for mode in ALL_MODES:
        vs = [v for v in verdicts if v.mode == mode]
        if not vs:
            continue
        hand = (f"{sum(v.by_hand is None for v in vs)}" if mode in HAND_MODES
                else f"({sum(v.by_hand is None for v in vs)} cold)")
        lines.append(f"| {MODE_TITLES[mode]} | {len(vs)} | {hand} | "
                     f"{sum(v.ferryman is None for v in vs)} | "
                     f"{sum(v.regression for v in vs)} |")
    return "\n".join(lines) + "\n"
