"""The zdtm catalog's format and the compatibility table (pure: no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vm.vmrun import Guest, Run
from tests.zdtm import table
from tests.zdtm.catalog import Entry, curated, parse
from tests.zdtm.guests import verdicts as guest_verdicts
from tests.zdtm.suite import Verdict
from tests.zdtm.table import render, short, totals

SLEEP = Entry("sleeping00", tcp=False, what="a sleeping process")
FIFO = Entry("fifo", tcp=False, what="a FIFO")


def test_catalog_lines_flags_and_comments() -> None:
    entries = parse("# header\n\nsleeping00   # a sleeping process\nsocket-tcp-local tcp # tcp\n"
                    "maps00 sample # maps\nsocket-tcp6-local tcp sample # tcp6\n")
    assert entries == [SLEEP, Entry("socket-tcp-local", tcp=True, what="tcp"),
                       Entry("maps00", tcp=False, what="maps", sample=True),
                       Entry("socket-tcp6-local", tcp=True, what="tcp6", sample=True)]
    assert parse("fifo sample guest # f\n") == [Entry("fifo", tcp=False, what="f", sample=True,
                                                      guest=True)]
    with pytest.raises(ValueError, match="unknown flag"):
        parse("fifo fast\n")


def test_the_curated_list_is_long_enough_and_has_no_duplicates() -> None:
    names = [e.name for e in curated()]
    assert len(names) >= 30
    assert len(set(names)) == len(names)
    assert 20 <= sum(e.sample for e in curated()) <= len(names) // 2
    assert sum(e.guest for e in curated()) >= 30  # issue 14: at least 30 tests in every mode


def test_reasons_lose_log_paths_and_per_run_ids() -> None:
    reason = ("b: restore failed: criu restore failed: 0x2193aa: Error splicing data: "
              "Resource temporarily unavailable (log: /tmp/x/state-b/restore.log) | more")
    assert short(reason) == ("b: restore failed: criu restore failed: Error splicing data: "
                             "Resource temporarily unavailable / more")
    assert short("dump: criu cannot dump it: no (frozen 14 ms): fix it") == \
        "dump: criu cannot dump it: no: fix it"
    assert len(short("x" * 1000)) == 240


def test_table_rows_in_order_failures_footnoted_known_noted() -> None:
    verdicts = [Verdict(SLEEP, "cold", None, None), Verdict(SLEEP, "postcopy", None, None),
                Verdict(FIFO, "cold", None, "splice (log: /a/b)"),
                Verdict(FIFO, "postcopy", "restore: splice", "splice")]
    text = render(verdicts, {("fifo", "cold"): "issue 14 item 2"})
    lines = text.splitlines()
    assert lines[0].startswith("2 zdtm static tests in 2 modes: 2 of 4 pass both")
    assert "1 pass by hand but fail under ferryman (1 of them known" in lines[0]
    assert lines[2] == ("| test | what it covers | cold: by hand | cold: ferryman | "
                        "post-copy: by hand | post-copy: ferryman |")
    assert lines[4] == "| `sleeping00` | a sleeping process | pass | pass | pass | pass |"
    assert lines[5] == "| `fifo` | a FIFO | pass | **fail** [1] | **fail** [2] | **fail** [3] |"
    assert lines[7:] == ["1. fifo, cold, ferryman: splice — known: issue 14 item 2",
                         "2. fifo, post-copy, by hand: restore: splice",
                         "3. fifo, post-copy, ferryman: splice"]


def test_precopy_and_hybrid_have_a_ferryman_column_held_to_cold_by_hand() -> None:
    """No by-hand pre-copy on a kernel without soft-dirty: the note says so, the columns are
    ferryman's only, and a cold by-hand pass makes a pre-copy failure a regression."""
    verdicts = [Verdict(SLEEP, "cold", None, None), Verdict(SLEEP, "precopy", None, None),
                Verdict(SLEEP, "hybrid", None, None),
                Verdict(FIFO, "cold", None, None), Verdict(FIFO, "precopy", None, "boom"),
                Verdict(FIFO, "hybrid", None, None)]
    assert Verdict(FIFO, "precopy", None, "boom").hand_mode == "cold"
    assert Verdict(FIFO, "precopy", None, "boom").regression
    lines = render(verdicts).splitlines()
    assert lines[0] == ("2 zdtm static tests in 3 modes: 5 of 6 pass both by hand and under "
                        "ferryman; 0 fail by hand (CRIU's reason below); 1 pass by hand but "
                        "fail under ferryman.")
    assert lines[2].startswith("Pre-copy and hybrid by hand: not possible on this host's kernel.")
    assert "held to the test moved cold by hand" in lines[2]
    assert lines[4] == ("| test | what it covers | cold: by hand | cold: ferryman | "
                        "pre-copy: ferryman | hybrid: ferryman |")
    assert lines[6] == "| `sleeping00` | a sleeping process | pass | pass | pass | pass |"
    assert lines[7] == "| `fifo` | a FIFO | pass | pass | **fail** [1] | pass |"
    assert lines[9:] == ["1. fifo, pre-copy, ferryman: boom"]


def test_a_test_outside_the_sample_has_empty_precopy_cells() -> None:
    verdicts = [Verdict(SLEEP, "cold", None, None), Verdict(SLEEP, "precopy", None, None),
                Verdict(FIFO, "cold", None, None)]
    lines = render(verdicts).splitlines()
    assert lines[7] == "| `fifo` | a FIFO | pass | pass | — |"


def test_guest_modes_have_both_columns_and_are_their_own_reference() -> None:
    verdicts = [Verdict(SLEEP, "cold", None, None), Verdict(SLEEP, "vm-precopy", None, None),
                Verdict(SLEEP, "vm-hybrid", None, None),
                Verdict(FIFO, "cold", None, None), Verdict(FIFO, "vm-precopy", "splice", "splice"),
                Verdict(FIFO, "vm-hybrid", None, "boom")]
    assert Verdict(FIFO, "vm-hybrid", None, "boom").hand_mode == "vm-hybrid"
    assert not Verdict(FIFO, "vm-precopy", "splice", "splice").regression
    lines = render(verdicts).splitlines()
    assert lines[0].endswith("1 fail by hand (CRIU's reason below); 1 pass by hand but fail "
                             "under ferryman.")
    assert lines[2].startswith("Pre-copy in guests and hybrid in guests: the same tests between "
                               "two QEMU guests")
    assert lines[4] == ("| test | what it covers | cold: by hand | cold: ferryman | "
                        "pre-copy in guests: by hand | pre-copy in guests: ferryman | "
                        "hybrid in guests: by hand | hybrid in guests: ferryman |")
    assert lines[7] == ("| `fifo` | a FIFO | pass | pass | **fail** [1] | **fail** [2] | pass | "
                        "**fail** [3] |")


def test_a_rendered_table_parses_back_to_its_verdicts() -> None:
    """python -m tests.zdtm keeps the modes it did not run from the committed table."""
    verdicts = [Verdict(SLEEP, "cold", None, None), Verdict(SLEEP, "postcopy", None, None),
                Verdict(SLEEP, "precopy", None, None), Verdict(SLEEP, "vm-hybrid", None, None),
                Verdict(FIFO, "cold", "no rlimit", "no rlimit"),
                Verdict(FIFO, "postcopy", None, "splice: x"),
                Verdict(FIFO, "precopy", "no rlimit", None),
                Verdict(FIFO, "vm-hybrid", "a: b", None)]
    text = render(verdicts)
    assert table.parse(text, [SLEEP, FIFO]) == verdicts
    assert table.parse(text, [FIFO]) == verdicts[4:]
    assert render(table.parse(text, [SLEEP, FIFO])) == text


def test_totals_per_mode() -> None:
    verdicts = [Verdict(SLEEP, "cold", None, None), Verdict(FIFO, "cold", "x", "x"),
                Verdict(SLEEP, "precopy", None, None), Verdict(FIFO, "precopy", "x", None),
                Verdict(SLEEP, "vm-precopy", None, "y"), Verdict(FIFO, "vm-precopy", None, None)]
    assert totals(verdicts).splitlines()[2:] == [
        "| cold | 2 | 1 | 1 | 0 |", "| pre-copy | 2 | (1 cold) | 2 | 0 |",
        "| pre-copy in guests | 2 | 2 | 1 | 1 |"]


def test_guest_cells_become_verdicts_held_to_pre_copying() -> None:
    """vm1's ``@@ zdtm`` lines; a ferryman pass that did not pre-dump is a failure, a cell
    never reported says so."""
    lines = [
        '@@ zdtm {"name": "sleeping00", "mode": "precopy", "tool": "by hand", "reason": null, '
        '"report": {}}',
        '@@ zdtm {"name": "sleeping00", "mode": "precopy", "tool": "ferryman", "reason": null, '
        '"report": {"iterations": [12], "dirty_tracker": "soft-dirty"}}',
        '@@ zdtm {"name": "sleeping00", "mode": "hybrid", "tool": "by hand", "reason": "boom", '
        '"report": {}}',
        '@@ zdtm {"name": "sleeping00", "mode": "hybrid", "tool": "ferryman", "reason": null, '
        '"report": {"iterations": [], "dirty_tracker": "soft-dirty"}}']
    run = Run(rc=0, stderr="", seconds=1.0,
              guests={"vm1": Guest("vm1", 0, "\n".join(lines), Path("/nonexistent"))})
    got = guest_verdicts([SLEEP, FIFO], ("vm-precopy", "vm-hybrid"), run)
    assert got[:2] == [Verdict(SLEEP, "vm-precopy", None, None),
                       Verdict(SLEEP, "vm-hybrid", "boom",
                               "--mode hybrid committed without a pre-dump")]
    assert got[2].by_hand == got[2].ferryman == "no result from the guests (run-vm.sh rc 0)"
