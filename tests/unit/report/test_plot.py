"""The report picture: a PNG is written for every kind of report (looked at by eye, too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ferryman.errors import ReportError
from ferryman.report.plot import plot_report
from tests.unit.report import samples

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _empty() -> dict[str, Any]:
    data = samples.cold_committed()
    data.update(phases=[], result="failed")
    return data


@pytest.mark.parametrize("make", [samples.cold_committed, samples.rolled_back,
                                  samples.postcopy_committed, samples.precopy_committed,
                                  _empty])
def test_plot_writes_a_png(tmp_path: Path, make: Any) -> None:
    out = tmp_path / "timeline.png"
    plot_report(make(), out)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000


def test_iterations_make_the_picture_taller(tmp_path: Path) -> None:
    from PIL import Image  # matplotlib depends on pillow

    plot_report(samples.cold_committed(), tmp_path / "a.png")
    plot_report(samples.precopy_committed(), tmp_path / "b.png")
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert a.width == b.width
        assert b.height > a.height + 300


def test_an_unwritable_path_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError) as info:
        plot_report(samples.cold_committed(), tmp_path / "no-such-dir" / "x.png")
    assert "cannot write the picture" in info.value.message
