"""The zdtm catalog's format and the compatibility table (pure: no processes)."""

from __future__ import annotations

import pytest

from tests.zdtm.catalog import Entry, curated, parse
from tests.zdtm.suite import Verdict
from tests.zdtm.table import render, short

SLEEP = Entry("sleeping00", tcp=False, what="a sleeping process")
FIFO = Entry("fifo", tcp=False, what="a FIFO")


def test_catalog_lines_flags_and_comments() -> None:
    entries = parse("# header\n\nsleeping00   # a sleeping process\nsocket-tcp-local tcp # tcp\n"
                    "maps00 sample # maps\nsocket-tcp6-local tcp sample # tcp6\n")
    assert entries == [SLEEP, Entry("socket-tcp-local", tcp=True, what="tcp"),
                       Entry("maps00", tcp=False, what="maps", sample=True),
                       Entry("socket-tcp6-local", tcp=True, what="tcp6", sample=True)]
    with pytest.raises(ValueError, match="unknown flag"):
        parse("fifo fast\n")


def test_the_curated_list_is_long_enough_and_has_no_duplicates() -> None:
    names = [e.name for e in curated()]
    assert len(names) >= 30
    assert len(set(names)) == len(names)
    assert 20 <= sum(e.sample for e in curated()) <= len(names) // 2


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
    assert lines[2].startswith("Pre-copy and hybrid by hand: not possible on this kernel.")
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
