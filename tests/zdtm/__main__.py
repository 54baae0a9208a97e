"""Print (and write) the zdtm compatibility table: ``python -m tests.zdtm`` as root.

Builds the curated tests (scripts/build-zdtm.sh), sets up two namespace nodes, a cluster PKI
and B's agent of its own, runs every test in every mode by hand and under ferryman (pre-copy
and hybrid: ferryman only, held to the test moved cold by hand), and writes the markdown table
(default docs/zdtm-table.md, which README's "What can move" quotes). Exits 1 when a test passes
by hand but fails under ferryman, other than a known failure.
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
from tests.zdtm.catalog import build, curated
from tests.zdtm.known import KNOWN
from tests.zdtm.movers import MODES, PRECOPY_MODES, precopy_unavailable
from tests.zdtm.suite import Lab, Verdict
from tests.zdtm.table import render

REPO = Path(__file__).resolve().parent.parent.parent


def _pki(base: Path, topo: Topology) -> Path:
    pki = base / "pki"
    for args in (("pki", "init", str(pki)),
                 *(("pki", "issue", n, "--pki", str(pki), "--ip", topo[n].ip) for n in "ab")):
        res = run_cli(*args)
        if res.returncode != 0:
            raise RuntimeError(f"ferryman {' '.join(args)}: {res.stderr.strip()}")
    return pki


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.zdtm",
                                description="CRIU's zdtm static tests under migration")
    p.add_argument("--only", help="comma-separated test names (default: tests/zdtm/curated.txt)")
    p.add_argument("--modes", default=",".join(MODES),
                   help="comma-separated (default: %(default)s)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "zdtm-table.md",
                   help="write the markdown table here (default: %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (images, logs)")
    args = p.parse_args()
    entries = curated()
    if args.only:
        wanted = set(args.only.split(","))
        entries = [e for e in entries if e.name in wanted]
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        p.error(f"unknown modes {sorted(unknown)}: choose from {','.join(MODES)}")
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
        lab = Lab(topo, _pki(base, topo), base, "criu", static)
        for e in entries:
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
    table = render(verdicts, KNOWN)
    print(table)
    args.out.write_text(table)
    print(f"written to {args.out} ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    worse = [v for v in verdicts if v.regression and (v.entry.name, v.mode) not in KNOWN]
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
