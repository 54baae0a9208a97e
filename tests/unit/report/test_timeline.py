"""The timeline: when the workload stopped and ran again, per mode and outcome."""

from __future__ import annotations

import pytest

from ferryman.report.load import parse_report
from ferryman.report.timeline import build_timeline
from tests.unit.report import samples


def test_cold_downtime_runs_from_freezing_to_done() -> None:
    t = build_timeline(parse_report(samples.cold_committed()))
    assert t.final_phase == "DONE"
    assert t.rows[0] == "HELLO"
    assert t.end_ms == pytest.approx(1330.91)
    assert t.downtime is not None
    assert t.downtime.start_ms == pytest.approx(274.25)
    assert t.downtime.end_ms == pytest.approx(t.end_ms)
    assert t.resumed
    assert t.page_tail is None


def test_postcopy_downtime_ends_when_serving_pages_begins() -> None:
    t = build_timeline(parse_report(samples.postcopy_committed()))
    (serving,) = t.bars_of("SERVING_PAGES")
    assert t.downtime is not None
    assert t.downtime.end_ms == serving.start_ms
    assert t.downtime.duration_ms == pytest.approx(231.9, abs=0.1)
    assert t.page_tail is not None
    assert t.page_tail.start_ms == serving.start_ms
    assert t.page_tail.duration_ms == 912.0


def test_rollback_downtime_ends_when_the_source_resumed() -> None:
    t = build_timeline(parse_report(samples.rolled_back()))
    assert t.final_phase == "ROLLED_BACK"
    assert t.downtime is not None
    assert t.downtime.end_ms == t.end_ms
    assert t.resumed


def test_repeated_phases_are_numbered() -> None:
    t = build_timeline(parse_report(samples.precopy_committed()))
    assert [b.repeat for b in t.bars_of("ITERATING")] == [1, 2, 3, 4]
    assert t.rows.count("ITERATING") == 1
    assert t.downtime is not None
    assert t.downtime.start_ms == t.bars_of("FREEZING")[0].start_ms


def test_a_workload_lost_while_frozen_never_resumed() -> None:
    data = samples.rolled_back()
    data["result"] = "lost"
    t = build_timeline(parse_report(data))
    assert t.final_phase == "LOST"
    assert t.downtime is not None
    assert not t.resumed


def test_no_freeze_no_downtime_and_no_phases_no_bars() -> None:
    data = samples.cold_committed()
    data["result"] = "failed"
    data["phases"] = data["phases"][:1]
    t = build_timeline(parse_report(data))
    assert t.downtime is None
    data["phases"] = []
    t = build_timeline(parse_report(data))
    assert (t.bars, t.end_ms, t.downtime) == ((), 0.0, None)


def test_the_measured_downtime_places_the_freeze_inside_freezing() -> None:
    # The source enters FREEZING a moment before CRIU freezes the workload; the report's
    # downtime_ms is measured from the freeze itself and wins.
    data = samples.cold_committed()
    data["downtime_ms"] = 1000.0
    t = build_timeline(parse_report(data))
    assert t.downtime is not None
    assert t.downtime.end_ms == pytest.approx(t.end_ms)
    assert t.downtime.duration_ms == pytest.approx(1000.0)
    (freezing,) = t.bars_of("FREEZING")
    assert freezing.start_ms < t.downtime.start_ms < freezing.end_ms
    # A downtime longer than the phases allow is not trusted to move the start.
    data["downtime_ms"] = 5000.0
    t = build_timeline(parse_report(data))
    assert t.downtime is not None
    assert t.downtime.start_ms == freezing.start_ms


def test_a_recorded_freeze_start_anchors_the_downtime_and_the_probe_has_its_span() -> None:
    data = samples.cold_committed()
    # the destination committed 150 ms before the source reached DONE (runc's clean-up)
    data.update(freeze_start_ms=280.0, downtime_ms=900.0)
    data["probe"] = {"target": "tcp:10.0.0.100:7000", "source": "10.0.0.1", "sent": 90,
                     "answered": 90, "max_gap_ms": 912.0, "max_gap_start_ms": 275.0,
                     "error": None}
    t = build_timeline(parse_report(data))
    assert t.downtime is not None
    assert (t.downtime.start_ms, t.downtime.end_ms) == (280.0, 1180.0)
    assert t.client_gap is not None
    assert (t.client_gap.start_ms, t.client_gap.end_ms) == (275.0, 1187.0)
    assert build_timeline(parse_report(samples.cold_committed())).client_gap is None
