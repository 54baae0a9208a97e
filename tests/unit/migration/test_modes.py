"""``--mode auto``: each rule, its edges, and the safety properties over every input."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.migration.modes import Mode, ModeChoice, choose_mode, cold_downtime_ms
from ferryman.migration.verdict import MODES

GB = 10**9
# 1 GB/s link, 150 ms fixed cost, 300 ms budget: cold fits up to 150 MB of RSS.
BASE: dict[str, Any] = {
    "mem_track": True,
    "lazy_pages": True,
    "no_postcopy": False,
    "rss_bytes": 4 * GB,
    "dirty_pages_per_s": 1000.0,
    "bandwidth_bytes_per_s": 1e9,
    "max_downtime_ms": 300.0,
}


def choose(**overrides: Any) -> ModeChoice:
    return choose_mode(**{**BASE, **overrides})


def test_modes_match_the_wire_names() -> None:
    assert {m.value for m in Mode if m.decided} == set(MODES)
    assert {m.value for m in Mode} - set(MODES) == {"auto"}


def test_cold_downtime() -> None:
    assert cold_downtime_ms(150_000_000, 1e9, 150.0) == pytest.approx(300.0)


@pytest.mark.parametrize(
    ("rss", "mode"), [(150_000_000, Mode.COLD), (150_000_001, Mode.PRECOPY), (0, Mode.COLD)]
)
def test_cold_when_it_fits_the_budget(rss: int, mode: Mode) -> None:
    choice = choose(rss_bytes=rss)
    assert choice.mode is mode
    assert ("fits" in choice.reason) is (mode is Mode.COLD)


def test_cold_fits_wins_whatever_else_is_available() -> None:
    for mem_track in (True, False):
        for lazy in (True, False):
            got = choose(
                rss_bytes=1000, mem_track=mem_track, lazy_pages=lazy, dirty_pages_per_s=1e9
            )
            assert got.mode is Mode.COLD


def test_precopy_when_it_converges_even_if_lazy_is_allowed() -> None:
    mode, reason = choose()
    assert mode is Mode.PRECOPY
    assert "converges" in reason


@pytest.mark.parametrize(
    ("dirty_bps", "lazy", "mode"),
    [
        (0.5e9, True, Mode.PRECOPY),  # exactly half the link: converges
        (0.5e9 + 4096, True, Mode.HYBRID),
        (0.5e9 + 4096, False, Mode.COLD),
        (5e9, True, Mode.HYBRID),
    ],
)
def test_convergence_edge(dirty_bps: float, lazy: bool, mode: Mode) -> None:
    assert choose(dirty_pages_per_s=dirty_bps / 4096, lazy_pages=lazy).mode is mode


def test_unmeasured_dirty_rate_never_counts_as_converging() -> None:
    assert choose(dirty_pages_per_s=None).mode is Mode.HYBRID
    mode, reason = choose(dirty_pages_per_s=None, lazy_pages=False)
    assert mode is Mode.COLD
    assert "not measured" in reason


def test_no_postcopy_falls_back_to_cold_with_a_reason() -> None:
    mode, reason = choose(dirty_pages_per_s=1e7, no_postcopy=True)
    assert mode is Mode.COLD
    assert "--no-postcopy" in reason
    assert "will be missed" in reason


def test_postcopy_without_dirty_tracking() -> None:
    mode, reason = choose(mem_track=False)
    assert mode is Mode.POSTCOPY
    assert "mem_track" in reason


@pytest.mark.parametrize(("lazy", "no_postcopy"), [(False, False), (True, True), (False, True)])
def test_cold_without_dirty_tracking_or_post_copy(lazy: bool, no_postcopy: bool) -> None:
    mode, reason = choose(mem_track=False, lazy_pages=lazy, no_postcopy=no_postcopy)
    assert mode is Mode.COLD
    assert "will be missed" in reason
    assert ("--no-postcopy" in reason) is no_postcopy


@pytest.mark.parametrize(
    "overrides",
    [
        {"rss_bytes": -1},
        {"page_size": 0},
        {"bandwidth_bytes_per_s": 0.0},
        {"bandwidth_bytes_per_s": math.inf},
        {"max_downtime_ms": 0.0},
        {"max_downtime_ms": math.nan},
        {"fixed_cost_ms": -1.0},
        {"dirty_pages_per_s": -1.0},
        {"dirty_pages_per_s": math.nan},
        {"converge_ratio": 0.0},
        {"converge_ratio": 1.0},
    ],
)
def test_rejects_bad_inputs(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        choose(**overrides)


inputs = st.fixed_dictionaries(
    {
        "mem_track": st.booleans(),
        "lazy_pages": st.booleans(),
        "no_postcopy": st.booleans(),
        "rss_bytes": st.integers(0, 2**40),
        "dirty_pages_per_s": st.none() | st.floats(0, 1e8),
        "bandwidth_bytes_per_s": st.floats(1e3, 1e11),
        "max_downtime_ms": st.floats(1.0, 1e5),
        "fixed_cost_ms": st.floats(0.0, 1e3),
    }
)


@given(inputs)
def test_safety_properties_hold_for_every_input(facts: dict[str, Any]) -> None:
    mode, reason = choose_mode(**facts)
    assert reason
    if facts["no_postcopy"] or not facts["lazy_pages"]:
        assert mode not in {Mode.POSTCOPY, Mode.HYBRID}
    if not facts["mem_track"]:
        assert mode not in {Mode.PRECOPY, Mode.HYBRID}
    cold_ms = cold_downtime_ms(
        facts["rss_bytes"], facts["bandwidth_bytes_per_s"], facts["fixed_cost_ms"]
    )
    assert (mode is Mode.COLD and "fits" in reason) is (cold_ms <= facts["max_downtime_ms"])


@given(inputs)
def test_no_postcopy_never_yields_postcopy_or_hybrid(facts: dict[str, Any]) -> None:
    assert choose_mode(**{**facts, "no_postcopy": True}).mode in {Mode.COLD, Mode.PRECOPY}
