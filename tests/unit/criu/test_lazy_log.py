"""The post-copy tail's numbers, from the lazy-pages daemon's own log (CRIU 4.2.1, -v4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.criu.page_server import lazy_fault_waits, lazy_pages_transferred

# From a hybrid migration in the QEMU guests (issue 20), before the lazy tail was pushed in
# the background: a page pushed (0x374e9000), two faults served one round trip each, a fault
# on a page already requested, a fault on a page with no data (a zero page), a second task.
LOG = """(00.362650) uffd: 3002-8: Found 1058 pages to be handled by UFFD
(00.491057) uffd: 3002-8: #PF at 0x7f5c8e318000
(00.491532) pr3002-5 Read 7f5c8e318000 1 pages
(00.533099) uffd: 3002-8: uffd_copy: 0x7f5c8e318000/4096
(00.574141) pr3002-5 Read 374e9000 1 pages
(00.577386) uffd: 3002-8: uffd_copy: 0x374e9000/4096
(00.832336) uffd: 3002-8: #PF at 0x7f5c8e317000
(00.833004) pr3002-5 Read 7f5c8e317000 2 pages
(00.840000) uffd: 3002-8: #PF at 0x7f5c8e318000
(00.841000) uffd: 3002-8: #PF at 0x7f5c8e317000
(00.858280) uffd: 3002-8: uffd_copy: 0x7f5c8e317000/8192
(00.900000) uffd: 3003-9: #PF at 0x1000
(00.910000) uffd: 3003-9: zero page at 0x1000
(46.265289) uffd: 3002-8: UFFD transferred pages: (1058/1058)
(46.265300) uffd: 3003-9: UFFD transferred pages: (0/0)
"""


def test_fault_waits_run_from_the_fault_to_the_copy_that_covers_it(tmp_path: Path) -> None:
    log = tmp_path / "lazy-pages.log"
    log.write_text(LOG)
    total, longest = lazy_fault_waits(log)
    # 42.042 + (858.280 - 832.336) + (858.280 - 840.000) + 10.000; the repeated fault on
    # 0x7f5c8e317000 waits with the first one
    assert total == pytest.approx(42.042 + 25.944 + 18.280 + 10.0, abs=0.01)
    assert longest == pytest.approx(42.042, abs=0.01)
    assert lazy_pages_transferred(log) == (1058, 1058, 5)


def test_a_fault_never_answered_waits_until_the_log_ends(tmp_path: Path) -> None:
    log = tmp_path / "lazy-pages.log"
    log.write_text("(01.000000) uffd: 7-1: #PF at 0x2000\n"
                   "(01.500000) uffd: 7-1: uffd_copy: 0x3000/4096\n")
    assert lazy_fault_waits(log) == pytest.approx((500.0, 500.0))


def test_no_log_no_waits(tmp_path: Path) -> None:
    assert lazy_fault_waits(tmp_path / "none.log") == (0.0, 0.0)
