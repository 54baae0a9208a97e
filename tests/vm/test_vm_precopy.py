"""Pre-copy with the real CRIU between two QEMU guests whose kernel has soft-dirty tracking.

One two-guest boot (tests/vm/scenarios/precopy.sh) serves every test here: in vm1 the test
workload (tests/support/workload.py, over the read-only share) dirties pages at a fixed rate and
is pre-dumped twice with --track-mem into a page server on vm2 across the private link, then
dumped; the remaining images go to vm2, which restores the workload and has it verify every page.
This proves the test host works end to end before ferryman's own pre-copy runs on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.vm.vmrun import Run, VMError, run_vm

pytestmark = [pytest.mark.vm, pytest.mark.timeout(900)]

MIB = 128  # the workload's buffer: 32768 pages
RATE = 100  # pages dirtied per second
GAP = 2  # seconds between iterations
PAGES = MIB * 256


@pytest.fixture(scope="module")
def precopy(vm_image: float, tmp_path_factory: pytest.TempPathFactory) -> Run:
    outdir = tmp_path_factory.mktemp("vm-precopy")
    run = run_vm(["bash", "tests/vm/scenarios/precopy.sh"], outdir=outdir, pair=True,
                 env={"MIB": str(MIB), "RATE": str(RATE), "GAP": str(GAP)},
                 mem_mib=1536, cpus=1, timeout=600)
    _summary(run, vm_image, outdir)
    return run


def _summary(run: Run, image_s: float, outdir: Path) -> None:
    """One line per step on stdout (shown with -s, and in the report of a failing test)."""
    print(f"\n[vm] image {image_s:.1f}s; two-guest boot + scenario {run.seconds:.1f}s "
          f"(rc={run.rc}); logs in {outdir}")
    for key in ("src-1", "src-2", "src-3"):
        try:
            r: dict[str, Any] = run.result(key)
        except VMError:
            continue
        print(f"[vm] {r['action']:8} {r['stats']['pages_written']:6} pages written, "
              f"{r['stats']['pages_skipped_parent']:6} skipped (in parent), {r['ms']} ms")
    for key, label in (("src-shipped", "freeze->images on vm2"), ("dst-restore", "restore")):
        try:
            r = run.result(key)
        except VMError:
            continue
        print(f"[vm] {label}: {r.get('freeze_to_shipped_ms', r.get('ms'))} ms")


def test_both_guests_complete(precopy: Run) -> None:
    assert precopy.rc == 0, precopy.describe()
    assert all(g.rc == 0 for g in precopy.guests.values()), precopy.describe()


def test_guest_kernel_tracks_soft_dirty(precopy: Run) -> None:
    for name in ("vm1", "vm2"):
        guest = precopy.result(f"{name}-guest")
        assert guest["soft_dirty"] is True, guest
        assert guest["kernel"].startswith("6.1."), guest


def test_final_dump_writes_far_fewer_pages_than_first_predump(precopy: Run) -> None:
    first, second, final = (precopy.result(f"src-{i}") for i in (1, 2, 3))
    assert (first["action"], second["action"], final["action"]) == ("pre-dump", "pre-dump", "dump")
    # the first round copies the whole buffer, later ones only what was dirtied meanwhile
    assert first["stats"]["pages_written"] >= PAGES
    assert first["stats"]["pages_skipped_parent"] == 0
    assert second["stats"]["pages_skipped_parent"] >= PAGES * 9 // 10
    assert final["stats"]["pages_written"] * 10 < first["stats"]["pages_written"], final
    assert final["stats"]["pages_written"] * 10 < PAGES


def test_page_server_on_b_received_what_a_sent(precopy: Run) -> None:
    for i in (1, 2, 3):
        sent = precopy.result(f"src-{i}")["stats"]["pages_written"]
        assert precopy.result(f"dst-{i}")["pages"] == sent, i


def test_restored_on_b_with_memory_intact(precopy: Run) -> None:
    started = precopy.result("workload")
    status = precopy.result("dst-status")
    assert status["pid"] == started["pid"] == precopy.result("dst-restore")["pid"]
    assert status["phase"] == "running"
    assert status["pages"] == PAGES
    assert status["bad_pages"] == 0, status
    assert status["writes"] > 0  # it kept dirtying its memory, before and after the move


def test_guest_can_run_ferryman_from_the_share(precopy: Run) -> None:
    """What a later ferryman-in-the-guest needs: its imports, pycriu, and a PKI (cryptography)."""
    ferryman = precopy.result("ferryman")
    assert ferryman["ok"], ferryman.get("error")
