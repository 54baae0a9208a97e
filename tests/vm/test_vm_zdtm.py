"""CRIU's zdtm static tests moved pre-copy and hybrid between two QEMU guests (issue 14): every
test that passes moved by CRIU typed by hand must pass moved by ``ferryman migrate``.

This host's kernel has no soft-dirty, so CRIU typed by hand cannot pre-copy here; the guests'
can (tests/zdtm/guests.py, tests/vm/scenarios/zdtm_guest.py): each test starts on vm1 in
namespaces of its own, moves to vm2 by hand (``criu page-server`` per iteration, two ``criu
pre-dump --track-mem``, the final dump to the page server or ``--lazy-pages``) and by ferryman,
gets SIGTERM there and reports its own PASS or FAIL.

``make test-vm`` moves the few tests of ``CI_TESTS`` (pipes with data, a live TCP connection, a
file shared by two processes, mappings: 16 moves, 4.5 min with the boots, measured 270 s);
``FERRYMAN_ZDTM_ALL=1`` moves every test
marked ``guest`` in tests/zdtm/curated.txt (the guest columns of docs/zdtm-table.md, which
``python -m tests.zdtm --modes vm-precopy,vm-hybrid`` rewrites). The CI tests pass by hand
there, so here they must pass both ways.
"""

from __future__ import annotations

import os

import pytest

from tests.vm.vmrun import Run
from tests.zdtm.catalog import Entry, build, curated
from tests.zdtm.guests import run_in_guests, timings
from tests.zdtm.movers import GUEST_MODES
from tests.zdtm.suite import Verdict
from tests.zdtm.table import render

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3 * 3600)]

CI_TESTS = ("pipe01", "socket-tcp-local", "file_shared", "maps00")
ALL = os.environ.get("FERRYMAN_ZDTM_ALL") == "1"
ENTRIES = [e for e in curated() if e.guest and (ALL or e.name in CI_TESTS)]


@pytest.fixture(scope="module")
def guests(vm_image: float, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[list[Verdict], Run]:
    static = build([e.name for e in ENTRIES])
    work = tmp_path_factory.mktemp("vm-zdtm")
    verdicts, run = run_in_guests(ENTRIES, GUEST_MODES, static, work)
    print(f"\n[vm] image {vm_image:.1f}s; zdtm in guests: {timings(run)}; logs in {work}\n"
          + render(verdicts))
    return verdicts, run


def test_ci_tests_are_guest_tests() -> None:
    guest = {e.name for e in curated() if e.guest}
    assert set(CI_TESTS) <= guest, set(CI_TESTS) - guest


def test_guests_have_soft_dirty_and_report_every_cell(guests: tuple[list[Verdict], Run]) -> None:
    verdicts, run = guests
    assert run.rc == 0, run.describe()
    for name in ("vm1", "vm2"):
        assert run.result(f"{name}-guest")["soft_dirty"] is True
    assert len(verdicts) == len(ENTRIES) * len(GUEST_MODES)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
@pytest.mark.parametrize("mode", GUEST_MODES)
def test_zdtm_moves_under_ferryman_as_by_hand_in_guests(
        guests: tuple[list[Verdict], Run], entry: Entry, mode: str) -> None:
    v = next(v for v in guests[0] if v.entry.name == entry.name and v.mode == mode)
    if entry.name in CI_TESTS:  # the reference itself must hold, or the check says nothing
        assert v.by_hand is None, f"{entry.name} fails moved by hand ({mode}): {v.by_hand}"
    if v.by_hand is None:
        assert v.ferryman is None, (f"{entry.name} passes moved by hand ({mode}) but fails "
                                    f"under ferryman: {v.ferryman}")
