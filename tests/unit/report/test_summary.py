"""The text summary: short after ``ferryman migrate``, full for ``ferryman report``."""

from __future__ import annotations

from ferryman.report.load import parse_report
from ferryman.report.summary import compression_line, ms, summary
from tests.unit.report import samples


def test_ms_keeps_a_decimal_only_where_it_matters() -> None:
    assert [ms(None), ms(0.0), ms(0.04), ms(1.86), ms(833.25)] == \
        ["-", "0.0 ms", "<0.1 ms", "1.9 ms", "833 ms"]


def test_short_summary_of_a_cold_migration() -> None:
    text = summary(samples.cold_committed())
    assert text.splitlines() == [
        "migration 3f9c2a7e51d04b6c: COMMITTED (cold)",
        "  workload     PID 4242 on a -> PID 4242 on b",
        "  downtime     1057 ms    total 1331 ms",
        "  moved        262.7 MiB (pages 262.7 MiB, other images 9 KiB; RSS 272.2 MiB)",
        "  criu         freezing 0.5 ms, frozen 977 ms, memdump 539 ms, restore 156 ms",
    ]


def test_a_bandwidth_cap_is_shown() -> None:
    text = summary({**samples.cold_committed(), "max_bandwidth_bytes_per_s": 25_000_000})
    assert "  bandwidth    pages capped at 200 Mbit/s on the wire (--max-bandwidth)" in \
        text.splitlines()
    assert "bandwidth" not in summary(samples.cold_committed())


def test_summary_takes_the_dataclass_the_migration_built() -> None:
    report = parse_report(samples.cold_committed()).report
    assert summary(report) == summary(samples.cold_committed())


def test_full_summary_has_the_phase_table_with_the_downtime_marked() -> None:
    lines = summary(samples.cold_committed(), full=True).splitlines()
    table = lines[lines.index("phases") + 1:]
    assert table[0].split() == ["phase", "start", "duration"]
    assert table[1].split() == ["HELLO", "0", "ms", "274", "ms"]
    assert table[3].split() == ["FREEZING", "274", "ms", "833", "ms", "*"]
    assert table[2].split()[-1] == "ms"  # PLANNED: before the freeze, unmarked
    assert table[8].split() == ["DONE", "1331", "ms"]
    assert "  * the workload was frozen for 1057 ms (274 ms to 1331 ms)" in lines


def test_full_summary_lists_criu_statistics_in_ms_and_counters() -> None:
    text = summary(samples.cold_committed(), full=True)
    assert "criu dump\n  times      freezing 0.5 ms, frozen 977 ms, memdump 539 ms, " \
           "memwrite 525 ms\n  counters   pages_scanned 67345," in text
    assert "criu restore\n  times      forking <0.1 ms, restore 156 ms\n" \
           "  counters   pages_restored 67258" in text
    assert "dump         /var/lib/ferryman/migrations/3f9c2a7e51d04b6c/dump.log" in text


def test_rolled_back_shows_the_error_the_freeze_and_the_destination_log() -> None:
    text = summary(samples.rolled_back(), full=True)
    lines = text.splitlines()
    assert lines[0] == "migration 3f9c2a7e51d04b6c: ROLLED_BACK (cold)"
    assert "PID - on b" in lines[1]
    assert lines[2] == "  downtime     - (frozen 536 ms until the rollback)    total 804 ms"
    assert "  error        migration rolled back, workload still runs on the source: b: " \
           "restore failed: criu restore failed: Can't open file data.txt on restore" in lines
    assert "restore" not in lines[4]  # no restore statistics: none shown
    assert "RESUMING" in text
    assert "  ROLLED_BACK           804 ms" in lines
    tail = lines[lines.index("destination log (last lines)") + 1:]
    assert tail[-1] == "  (00.012) Error (criu/cr-restore.c:1480): Restoring FAILED."


def test_postcopy_shows_the_page_tail() -> None:
    text = summary(samples.postcopy_committed(), full=True)
    assert "  page tail    67258 lazy pages arrived 912 ms after the workload resumed on " \
           "the destination" in text
    assert "  criu         restore 41 ms" in text
    assert "  SERVING_PAGES" in text
    assert "  page tail: every page on the destination at 1415 ms" in text
    assert "frozen for 232 ms (271 ms to 503 ms)" in text


def test_precopy_shows_iterations_and_the_final_dump() -> None:
    text = summary(samples.precopy_committed(), full=True)
    assert "  pre-copy     4 iterations, 81838 pages (319.7 MiB) before the freeze" in text
    assert "  ITERATING #2" in text
    lines = text.splitlines()
    rows = lines[lines.index("pre-copy iterations") + 1:]
    assert rows[0].split() == ["#", "pages", "written", "skipped", "MiB", "time"]
    assert rows[1].split() == ["1", "67258", "0", "262.7", "812", "ms"]
    assert rows[4].split() == ["4", "530", "66728", "2.1", "12", "ms"]
    assert rows[5].split() == ["final", "402", "66856", "1.6", "21", "ms"]


def test_a_report_with_no_phases_says_so() -> None:
    data = samples.cold_committed()
    data["phases"] = []
    assert "phases       none recorded" in summary(data, full=True)


def test_the_phase_the_freeze_happened_in_is_marked() -> None:
    data = samples.cold_committed()
    data["downtime_ms"] = 1000.0
    lines = summary(data, full=True).splitlines()
    assert next(ln for ln in lines if ln.startswith("  FREEZING")).endswith("  *")
    assert not next(ln for ln in lines if ln.startswith("  PLANNED")).endswith("*")
    assert "  * the workload was frozen for 1000 ms (331 ms to 1331 ms)" in lines


def test_a_container_migration_says_which_container_and_its_file_sync() -> None:
    data = {**samples.cold_committed(), "container": "web-1",
            "sync": {"presync_ms": 260.0, "presync_bytes": 2097152.0, "final_sync_ms": 132.4,
                     "final_sync_bytes": 446.0}}
    lines = summary(data).splitlines()
    assert "  container    runc web-1: 2.0 MiB of files rsynced, the final sync (frozen) " \
           "took 132 ms" in lines
    assert not any("clean-up" in ln for ln in lines)
    data["sync"] = {**data["sync"], "runc_after_commit_ms": 151.2}  # type: ignore[dict-item]
    assert "               runc's clean-up after the commit took 151 ms (not downtime: the " \
           "container ran on the destination)" \
        in summary(data).splitlines()
    assert not any(ln.startswith("  container") for ln in
                   summary(samples.cold_committed()).splitlines())


def test_probe_shows_the_client_observed_gap_and_survives_a_file_round_trip() -> None:
    data = samples.cold_committed()
    data["probe"] = {"target": "tcp:10.0.0.100:7000", "source": "10.0.0.1", "sent": 120,
                     "answered": 120, "max_gap_ms": 212.4, "max_gap_start_ms": 275.0,
                     "error": None}
    line = ("  client gap   212 ms, the longest wait of a client at tcp:10.0.0.100:7000 "
            "(120 of 120 requests answered)")
    assert line in summary(data).splitlines()
    data["probe"].update(answered=119, error="no answer in the last 5.1 s")
    assert "(119 of 120 requests answered; no answer in the last 5.1 s)" in summary(data)
    report = parse_report(data).report
    assert report.probe is not None
    assert report.probe.max_gap_ms == 212.4


def test_a_lazy_tail_shows_how_long_the_workload_waited_on_missing_pages() -> None:
    """Issue 20: a 46 s stall on faults after the resume was reported as "downtime 1.4 s"
    and nothing else; the summary names it, apart from the downtime."""
    r = {**samples.postcopy_committed(), "lazy_pages": 1058, "lazy_faults": 1026,
         "lazy_fault_wait_ms": 43841.0, "lazy_fault_max_ms": 71.5}
    text = summary(r, full=False)
    assert "  fault stall  the workload waited 43841 ms on missing pages after the resume " \
           "(the longest wait 72 ms; not in the downtime)" in text
    assert "1026 fetched on a page fault, the other 32 pushed in the background" in text


def test_no_fault_stall_line_without_the_measurement() -> None:
    assert "fault stall" not in summary(samples.postcopy_committed(), full=True)


def test_the_compression_line_says_the_bytes_and_who_compressed() -> None:
    c: dict[str, object] = {"on": True, "setting": "auto", "reason": "the link is slower",
                            "raw_bytes": 64 << 20, "wire_bytes": 16 << 20,
                            "framed_by": "relay"}
    line = compression_line(c)
    assert line.startswith("on (auto: the link is slower)")
    assert "64.0 MiB of pages as 16.0 MiB on the wire, ratio 4.00" in line
    assert "CRIU" not in line
    assert compression_line({**c, "framed_by": "criu"}).endswith(
        "(compressed by the source's CRIU itself)")
