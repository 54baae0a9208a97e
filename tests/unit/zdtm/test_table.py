"""The zdtm catalog's format and the compatibility table (pure: no processes)."""

from __future__ import annotations

import pytest

from tests.zdtm.catalog import Entry, curated, parse
from tests.zdtm.suite import Verdict
from tests.zdtm.table import render, short

SLEEP = Entry("sleeping00", tcp=False, what="a sleeping process")
FIFO = Entry("fifo", tcp=False, what="a FIFO")


def test_catalog_lines_flags_and_comments() -> None:
    entries = parse("# header\n\nsleeping00   # a sleeping process\nsocket-tcp-local tcp # tcp\n")
    assert entries == [SLEEP, Entry("socket-tcp-local", tcp=True, what="tcp")]
    with pytest.raises(ValueError, match="unknown flag"):
        parse("fifo fast\n")


def test_the_curated_list_is_long_enough_and_has_no_duplicates() -> None:
    names = [e.name for e in curated()]
    assert len(names) >= 30
    assert len(set(names)) == len(names)


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
