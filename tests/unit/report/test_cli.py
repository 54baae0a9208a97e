"""``ferryman report`` end to end in-process (no subprocesses): text, JSON, picture, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferryman.cli.main import main
from tests.unit.report import samples


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    return path


def test_report_prints_the_full_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    assert main(["report", str(write(tmp_path, samples.cold_committed()))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("migration 3f9c2a7e51d04b6c: COMMITTED (cold)\n")
    assert "\nphases\n" in out
    assert "criu dump" in out


def test_report_json_is_the_checked_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    data = samples.precopy_committed()
    data["unknown_key"] = 1
    assert main(["report", str(write(tmp_path, data)), "--json"]) == 0
    back = json.loads(capsys.readouterr().out)
    assert "unknown_key" not in back
    assert back["iterations"] == data["iterations"]
    assert back["phases"] == data["phases"]


def test_report_plot_writes_the_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "t.png"
    assert main(["report", str(write(tmp_path, samples.postcopy_committed())),
                 "--plot", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert f"timeline written to {out}" in capsys.readouterr().out


def test_a_bad_file_is_exit_11_and_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    path = tmp_path / "r.json"
    path.write_text("not json")
    assert main(["report", str(path)]) == 11
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"ferryman: error: {path}: not JSON (Expecting value at line 1 "
                          "column 1): give the JSON file written by")
