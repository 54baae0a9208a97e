"""Print (and write) the zdtm compatibility table: ``python -m tests.zdtm`` as root.

Builds the curated tests (scripts/build-zdtm.sh), sets up two namespace nodes, a cluster PKI
and B's agent of its own, runs every test in every host mode by hand and under ferryman
(pre-copy and hybrid: ferryman only, held to the test moved cold by hand); in the guest modes
(vm-precopy, vm-hybrid: tests/zdtm/guests.py) it boots two QEMU guests and moves the tests
marked ``guest`` in curated.txt (every test with ``--all``) by hand and under ferryman. It
writes the markdown table (default docs/zdtm-table.md), keeping the cells of the modes not run
this time from the table already there, and the per-mode totals into README's "What can move"
(between its ``zdtm-totals`` markers). Exits 1 when a test passes by hand but fails under
ferryman, other than a known failure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.conftest import run_cli
from tests.support.netns import Topology
from tests.zdtm.catalog import Entry, build, curated
from tests.zdtm.guests import run_in_guests, timings
from tests.zdtm.known import KNOWN
from tests.zdtm.movers import ALL_MODES, GUEST_MODES, MODES, PRECOPY_MODES, precopy_unavailable
from tests.zdtm.suite import Lab, Verdict
from tests.zdtm.table import parse, render, totals

REPO = Path(__file__).resolve().parent.parent.parent
README = REPO / "README.md"
BEGIN, END = "<!-- zdtm-totals: begin (python -m tests.zdtm) -->", "<!-- zdtm-totals: end -->"


def _pki(base: Path, topo: Topology) -> Path:
    pki = base / "pki"
    for args in (("pki", "init", str(pki)),
                 *(("pki", "issue", n, "--pki", str(pki), "--ip", topo[n].ip) for n in "ab")):
        res = run_cli(*args)
        if res.returncode != 0:
            raise RuntimeError(f"ferryman {' '.join(args)}: {res.stderr.strip()}")
    return pki


def _merged(verdicts: list[Verdict], table: Path, entries: list[Entry]) -> list[Verdict]:
    """These verdicts and, for the tests and modes not run now, those of ``table``; in
    curated.txt's order, then by mode."""
    ran = {(v.entry.name, v.mode) for v in verdicts}
    old = parse(table.read_text(), curated()) if table.exists() else []
    out = verdicts + [v for v in old if (v.entry.name, v.mode) not in ran]
    order = {e.name: i for i, e in enumerate(curated())}
    return sorted(out, key=lambda v: (order.get(v.entry.name, len(order)),
                                      ALL_MODES.index(v.mode)))


def _readme(block: str) -> None:
    """README's per-mode totals, between the markers."""
    text = README.read_text()
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        raise RuntimeError(f"README.md has no {BEGIN} ... {END} markers")
    README.write_text(f"{head}{BEGIN}\n{block}{END}{tail}")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.zdtm",
                                description="CRIU's zdtm static tests under migration")
    p.add_argument("--only", help="comma-separated test names (default: tests/zdtm/curated.txt)")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"comma-separated, of {','.join(ALL_MODES)} (default: %(default)s)")
    p.add_argument("--all", action="store_true",
                   help="guest modes: every curated test, not only those marked guest")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "zdtm-table.md",
                   help="write the markdown table here (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (images, logs)")
    args = p.parse_args()
    entries = curated()
    if args.only:
        wanted = set(args.only.split(","))
        entries = [e for e in entries if e.name in wanted]
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(ALL_MODES):
        p.error(f"unknown modes {sorted(unknown)}: choose from {','.join(ALL_MODES)}")
    guest_modes = [m for m in modes if m in GUEST_MODES]
    modes = [m for m in modes if m not in GUEST_MODES]
    no_tracker = precopy_unavailable()
    if no_tracker and set(modes) & set(PRECOPY_MODES):
        print(f"skipping pre-copy and hybrid: {no_tracker}", file=sys.stderr)
        modes = [m for m in modes if m not in PRECOPY_MODES]
    static = build([e.name for e in entries])
    verdicts: list[Verdict] = []
    t0 = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="ferryman-zdtm-"))
    topo = Topology(("a", "b"))
    lab: Lab | None = None
    try:
        if guest_modes:
            guests = [e for e in entries if e.guest or args.all or args.only]
            got, run = run_in_guests(guests, guest_modes, static, base / "vm")
            verdicts += got
            print(f"[zdtm {time.monotonic() - t0:6.1f} s] guests: {timings(run)}",
                  file=sys.stderr, flush=True)
        lab = Lab(topo, _pki(base, topo), base, "criu", static) if modes else None
        for e in entries if lab is not None else []:
            for mode in modes:
                v = lab.run(e, mode)
                verdicts.append(v)
                hand = "by hand" + ("" if v.hand_mode == mode else f" ({v.hand_mode})")
                print(f"[zdtm {time.monotonic() - t0:6.1f} s] {e.name} {mode}: {hand} "
                      f"{v.by_hand or 'pass'}; ferryman {v.ferryman or 'pass'}",
                      file=sys.stderr, flush=True)
    finally:
        if lab is not None:
            lab.close()
        topo.close()
        if args.keep:
            print(f"run directory kept: {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    verdicts = _merged(verdicts, args.out, entries)
    table = render(verdicts, KNOWN)
    print(table)
    args.out.write_text(table)
    if args.out.resolve() == (REPO / "docs" / "zdtm-table.md").resolve():
        _readme(totals(verdicts))
    print(f"written to {args.out} ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    worse = [v for v in verdicts if v.regression and (v.entry.name, v.mode) not in KNOWN]
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
