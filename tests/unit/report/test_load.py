"""Reading a migration report back: every field checked, every failure one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferryman.errors import FerrymanError, ReportError
from ferryman.migration.report import MigrationReport, PhaseTiming
from ferryman.report.load import (
    Iteration,
    ReportView,
    ShapeError,
    as_view,
    load_report,
    parse_report,
)
from tests.unit.report import samples


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    return path


def test_a_cold_report_reads_back_into_the_dataclass() -> None:
    view = parse_report(samples.cold_committed())
    r = view.report
    assert isinstance(r, MigrationReport)
    assert (r.result, r.mode, r.destination_pid) == ("committed", "cold", 4242)
    assert r.phases[2] == PhaseTiming("FREEZING", pytest.approx(274.25), 833.25)  # type: ignore[arg-type]
    assert r.criu["dump"]["frozen_time"] == 977465
    assert view.iterations == ()


def test_to_json_and_back_is_the_same_report() -> None:
    view = parse_report(samples.postcopy_committed())
    again = parse_report(view.report.to_json())
    assert again.report == view.report
    assert again.report.memory_complete_ms == 912.0
    assert again.report.lazy_pages == 67258


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    data = samples.cold_committed()
    data["total_ms"] = 1331
    data["phases"][0]["start_ms"] = 0
    r = parse_report(data).report
    assert r.total_ms == 1331.0
    assert isinstance(r.total_ms, float)
    assert isinstance(r.phases[0].start_ms, float)


def test_unknown_keys_are_ignored_and_defaults_fill_missing_optional_ones() -> None:
    data = {"migration_id": "x", "mode": "cold", "source_node": "a",
            "destination": "10.0.0.2:7070", "source_pid": 7, "from_the_future": [1, 2]}
    r = parse_report(data).report
    assert r.result == "failed"
    assert r.phases == []
    assert r.downtime_ms is None


def test_pre_copy_iterations_are_carried_next_to_the_report() -> None:
    view = parse_report(samples.precopy_committed())
    assert len(view.iterations) == 4
    assert view.iterations[1] == Iteration(pages_written=11840, pages_skipped=55418,
                                           seconds=0.164, bytes=11840 * 4096)


@pytest.mark.parametrize(("change", "where", "problem"), [
    (lambda d: d.pop("migration_id"), "migration_id", "missing"),
    (lambda d: d.update(source_pid="4242"), "source_pid", "expected an integer, got a string"),
    (lambda d: d.update(source_pid=True), "source_pid", "expected an integer, got true"),
    (lambda d: d.update(downtime_ms="fast"), "downtime_ms", "expected a number or null"),
    (lambda d: d["phases"][2].update(start_ms=None), "phases[2].start_ms",
     "expected a number, got null"),
    (lambda d: d["phases"].append("DONE"), "phases[7]", "expected an object, got a string"),
    (lambda d: d["criu"]["dump"].update(pages_written=1.5), "criu.dump.pages_written",
     "expected an integer, got a number 1.5"),
    (lambda d: d.update(phases={}), "phases", "expected a list, got an object"),
    (lambda d: d.update(iterations=[{"pages_written": 1}]), "iterations[0].pages_skipped",
     "missing"),
])
def test_a_wrong_shape_names_the_field(change: object, where: str, problem: str) -> None:
    data = samples.cold_committed()
    change(data)  # type: ignore[operator]
    with pytest.raises(ShapeError) as info:
        parse_report(data)
    assert info.value.where == where
    assert info.value.problem.startswith(problem)


def test_as_view_takes_a_report_a_view_or_a_dict() -> None:
    view = parse_report(samples.cold_committed())
    assert as_view(view) is view
    assert as_view(view.report).report is view.report
    assert as_view(samples.cold_committed()).report == view.report


def test_as_view_brings_iterations_of_a_future_report_into_shape() -> None:
    r = parse_report(samples.cold_committed()).report
    r.iterations = [{"pages_written": 5, "pages_skipped": 0, "seconds": 0.1,  # type: ignore[attr-defined]
                     "bytes": 20480}]
    assert as_view(r).iterations == (Iteration(5, 0, 0.1, 20480),)


def test_load_report_reads_a_file(tmp_path: Path) -> None:
    view = load_report(write(tmp_path, samples.rolled_back()))
    assert isinstance(view, ReportView)
    assert view.report.result == "rolled_back"
    assert "data.txt" in (view.report.error or "")


def _error(path: Path) -> ReportError:
    with pytest.raises(ReportError) as info:
        load_report(path)
    err = info.value
    assert isinstance(err, FerrymanError)
    assert err.exit_code == 11
    assert err.path == str(path)
    assert "\n" not in err.one_line()
    assert err.hint
    return err


def test_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    err = _error(tmp_path / "nope.json")
    assert err.one_line() == (f"{tmp_path / 'nope.json'}: no such file: give the JSON file "
                              "written by 'ferryman migrate --report FILE'")


def test_a_directory_is_not_a_report(tmp_path: Path) -> None:
    assert "is a directory" in _error(tmp_path).message


def test_not_json_says_where_it_broke(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"migration_id": "x",\n  oops}')
    assert "not JSON (" in _error(path).message
    assert "line 2 column 3" in _error(path).message
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert "not JSON" in _error(path).message


def test_the_wrong_shape_is_not_a_migration_report(tmp_path: Path) -> None:
    err = _error(write(tmp_path, [1, 2, 3]))
    assert err.message.endswith("not a migration report: expected a JSON object, got a list")
    data = samples.cold_committed()
    data["phases"][1]["duration_ms"] = "long"
    err = _error(write(tmp_path, data))
    assert "phases[1].duration_ms: expected a number, got a string 'long'" in err.message


def test_benchmark_results_get_a_hint_to_bench_plot(tmp_path: Path) -> None:
    err = _error(write(tmp_path, {"started": "2026", "cells": []}))
    assert err.message.endswith("not a migration report: migration_id is missing")
    assert "python -m bench.plot" in (err.hint or "")
