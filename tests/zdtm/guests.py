"""zdtm static tests moved pre-copy and hybrid between two QEMU guests, by hand and by ferryman.

This host's kernel has no soft-dirty, so CRIU typed by hand cannot pre-copy here
(tests/zdtm/movers.py); the guests (tests/vm: Debian's kernel, which has it) can. One two-guest
boot (tests/vm/run-vm.sh -2) runs tests/vm/scenarios/zdtm_guest.py in both: vm1 starts each
test, moves it to vm2 by hand and by ferryman, vm2 stops it and reads its verdict. The static
tests are the host's build (scripts/build-zdtm.sh; the guests are bookworm like the host and
the tests link only libc), shared read-only at the same path; their run directories are on a
read-write share both guests see (the storage both nodes share).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.vm.vmrun import Run, make_pki, run_vm
from tests.zdtm.catalog import Entry
from tests.zdtm.movers import GUEST_MODES, not_precopied
from tests.zdtm.suite import Verdict
from tests.zdtm.zdtmtest import command

SCENARIO = "tests/vm/scenarios/zdtm_guest.py"
BOOT_S = 120  # two guests' boots and agents, TCG, with slack
CELL_S = 60  # one test in one mode, by hand and by ferryman, with slack (measured: ~15 s)
# Tests whose own files the 9p share cannot hold (a unix socket bound to a file, an unlinked
# file chmod-ed, truncated or mapped): they work in a directory of each guest's own tmpfs, the
# same path in both, vm2's made empty before the move (but for zdtm's pidfiles); only their
# .out log is on the share.
# CRIU carries what they need itself (unix socket names, ghost files' contents).
LOCAL = frozenset({"sockets00", "unlink_fstat00", "ghost_holes00", "unlink_mmap00",
                   "inotify00"})


def run_in_guests(entries: Sequence[Entry], modes: Sequence[str], static: Path, work: Path
                  ) -> tuple[list[Verdict], Run]:
    """Move ``entries`` in ``modes`` (of ``GUEST_MODES``) between two guests; the verdicts
    (in test order) and the guests' run. ``work`` holds the PKI, run directories and logs."""
    if unknown := set(modes) - set(GUEST_MODES):
        raise ValueError(f"not guest modes: {sorted(unknown)}")
    pki = make_pki(work / "pki")
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    tests = [{"name": e.name, "tcp": e.tcp, "local": e.name in LOCAL,
              "argv": list(command(static, e.name))}
             for e in entries]
    timeout = BOOT_S + CELL_S * len(entries) * len(modes)
    run = run_vm(["python3", SCENARIO], outdir=work / "guests", pair=True,
                 env={"PKI": str(pki), "RUNS": str(runs), "STATIC": str(static),
                      "TESTS": json.dumps(tests),
                      "MODES": ",".join(m.removeprefix("vm-") for m in modes)},
                 mem_mib=1024, cpus=1, timeout=timeout, shares=(pki, static),
                 rw_shares=(runs,))
    return verdicts(entries, modes, run), run


def cells(run: Run) -> list[dict[str, Any]]:
    """vm1's ``@@ zdtm`` lines, in order."""
    out: list[dict[str, Any]] = []
    guest = run.guests.get("vm1")
    for line in (guest.out if guest else "").splitlines():
        if line.startswith("@@ zdtm "):
            out.append(json.loads(line[len("@@ zdtm "):]))
    return out


def verdicts(entries: Sequence[Entry], modes: Sequence[str], run: Run) -> list[Verdict]:
    """One verdict per test and mode; a cell the guests never reported says so."""
    got: dict[tuple[str, str, str], dict[str, Any]] = {}
    for c in cells(run):
        got[c["name"], "vm-" + c["mode"], c["tool"]] = c
    out = []
    for e in entries:
        for mode in modes:
            reasons: list[str | None] = []
            for tool in ("by hand", "ferryman"):
                c = got.get((e.name, mode, tool))
                if c is None:
                    reasons.append(f"no result from the guests (run-vm.sh rc {run.rc})")
                    continue
                reason = c["reason"]
                if reason is None and tool == "ferryman":
                    reason = not_precopied(mode, c["report"])
                reasons.append(reason)
            out.append(Verdict(e, mode, reasons[0], reasons[1]))
    return out


def timings(run: Run) -> str:
    """How long the cells took (for the log)."""
    secs = [float(c.get("s", 0)) for c in cells(run)]
    return (f"{len(secs)} moves in {run.seconds:.0f} s (boots included; a move "
            f"{min(secs, default=0):.1f}-{max(secs, default=0):.1f} s)")
