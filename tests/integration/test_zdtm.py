"""CRIU's own zdtm static tests under migration (issue 14): every test that passes when moved
by CRIU typed by hand must pass when moved by ``ferryman migrate``, in every mode.

Each test starts on node A in PID/IPC/UTS namespaces of its own, moves to node B (by hand:
bench/baseline.py; ferryman: B's agent over mutual TLS), gets SIGTERM there and reports its
own PASS or FAIL (tests/zdtm). A test that fails by hand passes here and is listed in the table
with CRIU's reason; one that passes by hand and fails under ferryman fails here, unless it is a
known failure (tests/zdtm/known.py: strict xfail, so a fix shows). The table (markdown) is
printed at the end and written to $FERRYMAN_ZDTM_TABLE, else to pytest's temp dir.

Every test moves cold and post-copy. Pre-copy and hybrid (the uffd-wp dirty tracker on this
kernel; no by-hand run is possible, the reference is the test moved cold by hand) move the
tests marked ``sample`` in tests/zdtm/curated.txt, or all of them with FERRYMAN_ZDTM_ALL=1.
Pre-copy and hybrid by hand need soft-dirty: tests/vm/test_vm_zdtm.py moves the tests marked
``guest`` both ways between two QEMU guests whose kernel has it (``make test-vm``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import Topology
from tests.zdtm.catalog import Entry, build, curated
from tests.zdtm.known import KNOWN
from tests.zdtm.movers import MODES, PRECOPY_MODES, precopy_unavailable
from tests.zdtm.suite import Lab, Verdict
from tests.zdtm.table import render

ENTRIES = curated()
VERDICTS: list[Verdict] = []
ALL = os.environ.get("FERRYMAN_ZDTM_ALL") == "1"  # pre-copy and hybrid for every test


@pytest.fixture(scope="module")
def lab(topology: Topology, pki: Path, criu_bin: str, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> Iterator[Lab]:
    static = build([e.name for e in ENTRIES])
    base = tmp_path_factory.mktemp("zdtm")
    the_lab = Lab(topology, pki, base, criu_bin, static)
    try:
        yield the_lab
    finally:
        the_lab.close()
        if VERDICTS:
            table = render(VERDICTS, KNOWN)
            out = Path(os.environ.get("FERRYMAN_ZDTM_TABLE") or base / "zdtm-table.md")
            out.write_text(table)
            capture = request.config.pluginmanager.get_plugin("capturemanager")
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                print(f"\n\nzdtm under migration (written to {out}):\n{table}")


def _params() -> list[object]:
    out: list[object] = []
    no_tracker = precopy_unavailable()
    for e in ENTRIES:
        for mode in MODES:
            if mode in PRECOPY_MODES and not (ALL or e.sample):
                continue
            note = KNOWN.get((e.name, mode))
            marks = [pytest.mark.xfail(strict=True, reason=note)] if note else []
            if mode in PRECOPY_MODES and no_tracker:
                marks = [pytest.mark.skip(reason=no_tracker)]
            out.append(pytest.param(e, mode, id=f"{e.name}-{mode}", marks=marks))
    return out


@pytest.mark.parametrize(("entry", "mode"), _params())
def test_zdtm_moves_under_ferryman_as_by_hand(lab: Lab, entry: Entry, mode: str) -> None:
    v = lab.run(entry, mode)
    VERDICTS.append(v)
    for tool, reason in (("by hand", v.by_hand), ("ferryman", v.ferryman)):
        assert not (reason or "").startswith("start:"), f"{tool}: the test did not start: {reason}"
    if v.by_hand is None:
        assert v.ferryman is None, (f"{entry.name} passes moved by hand ({v.hand_mode}) but "
                                    f"fails under ferryman ({mode}): {v.ferryman}")
