"""Convergence policies: exact iteration counts at every edge, and the budget model."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.migration.convergence import (
    BudgetPolicy,
    ConvergencePolicy,
    Decision,
    Environment,
    IterationStats,
    LxdPolicy,
    PhaulPolicy,
    TransferFit,
    final_dirty_pages,
    fit_transfer,
    from_criu_stats,
    replay,
)

ENV = Environment()
# 1000 pages/s: predicted downtime in ms = pages written + fixed cost (150 ms by default).
PAGE_PER_MS = Environment(bandwidth_bytes_per_s=4096 * 1000)


def it(index: int, written: int, skipped: int = 0, seconds: float = 1.0) -> IterationStats:
    return IterationStats(index, written, skipped, written + skipped, written * 4096, seconds)


def run(written: Sequence[int], skipped: Sequence[int] | None = None) -> list[IterationStats]:
    skipped = skipped or [0] * len(written)
    return [it(i, w, s) for i, (w, s) in enumerate(zip(written, skipped, strict=True), start=1)]


def forever(written: int = 1000, skipped: int = 0) -> Iterator[IterationStats]:
    i = 0
    while True:
        i += 1
        yield it(i, written, skipped if i > 1 else 0)


# --- records -----------------------------------------------------------------------------


def test_from_criu_stats_maps_counters() -> None:
    stats = {"pages_written": 10, "pages_skipped_parent": 30, "pages_scanned": 50, "other": 7}
    s = from_criu_stats(2, stats, 0.5)
    assert s == IterationStats(2, 10, 30, 50, 10 * 4096, 0.5)
    assert from_criu_stats(1, {"pages_written": 3}, 1.0, page_size=65536).bytes == 3 * 65536


def test_from_criu_stats_missing_keys_count_zero() -> None:
    assert from_criu_stats(1, {}, 0.0) == IterationStats(1, 0, 0, 0, 0, 0.0)


@pytest.mark.parametrize(
    "args",
    [
        (0, 1, 0, 1, 1, 1.0),
        (1, -1, 0, 0, 0, 1.0),
        (1, 0, -1, 0, 0, 1.0),
        (1, 0, 0, 0, -1, 1.0),
        (1, 0, 0, 0, 0, -0.1),
        (1, 0, 0, 0, 0, math.nan),
        (1, 0, 0, 0, 0, math.inf),
    ],
)
def test_iteration_stats_rejects_bad_values(args: tuple[int, int, int, int, int, float]) -> None:
    with pytest.raises(ValueError):
        IterationStats(*args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"page_size": 0},
        {"fixed_cost_ms": -1.0},
        {"fixed_cost_ms": math.nan},
        {"bandwidth_bytes_per_s": 0.0},
        {"bandwidth_bytes_per_s": math.inf},
    ],
)
def test_environment_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Environment(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "policy", [LxdPolicy(), PhaulPolicy(), BudgetPolicy(postcopy_allowed=True)]
)
def test_every_policy_starts_by_iterating_and_checks_indices(
    policy: ConvergencePolicy,
) -> None:
    assert policy.decide([], ENV).decision is Decision.ITERATE
    with pytest.raises(ValueError, match="index"):
        policy.decide([it(1, 1000), it(3, 1000)], ENV)


def test_replay_refuses_a_record_that_ends_while_iterating() -> None:
    with pytest.raises(ValueError, match="still iterating"):
        replay(LxdPolicy(max_iterations=5), run([1000, 1000]), ENV)


# --- LXD ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_iterations": 0},
        {"max_iterations": -1},
        {"goal_percent": 0},
        {"goal_percent": -5},
        {"goal_percent": 100.5},
    ],
)
def test_lxd_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LxdPolicy(**kwargs)  # type: ignore[arg-type]


def test_lxd_defaults() -> None:
    assert (LxdPolicy().max_iterations, LxdPolicy().goal_percent) == (10, 70)


@pytest.mark.parametrize("n", range(1, 13))
def test_lxd_goal_never_met_runs_exactly_max_iterations(n: int) -> None:
    # 69% unchanged every time: one short of the 70% goal.
    count, verdict = replay(LxdPolicy(max_iterations=n), forever(31, 69), ENV)
    assert count == n
    assert verdict.decision is Decision.FINAL
    assert "max_iterations" in verdict.reason


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in range(2, 11) for k in range(2, n + 1)])
def test_lxd_goal_met_at_iteration_k_stops_right_after_k(n: int, k: int) -> None:
    # exactly 70% unchanged at iteration k (the goal is >=), 69% before.
    written = [1000] + [31] * (k - 2) + [30] + [30] * (n - k)
    skipped = [0] + [69] * (k - 2) + [70] + [70] * (n - k)
    count, verdict = replay(
        LxdPolicy(max_iterations=n, goal_percent=70), run(written, skipped), ENV
    )
    assert count == k
    assert verdict.decision is Decision.FINAL
    assert "goal" in verdict.reason


def test_lxd_first_iteration_never_meets_the_goal() -> None:
    policy = LxdPolicy(max_iterations=5, goal_percent=1)
    assert policy.decide([it(1, 0, 1000)], ENV).decision is Decision.ITERATE
    assert policy.decide([it(1, 0, 1000), it(2, 0, 1000)], ENV).decision is Decision.FINAL


def test_lxd_goal_100_and_max_1_is_one_pre_dump() -> None:
    count, verdict = replay(LxdPolicy(max_iterations=1, goal_percent=100), forever(5, 995), ENV)
    assert (count, verdict.decision) == (1, Decision.FINAL)


def test_lxd_goal_100_needs_every_page_unchanged() -> None:
    policy = LxdPolicy(max_iterations=3, goal_percent=100)
    assert replay(policy, run([1000, 1, 0], [0, 999, 1000]), ENV)[0] == 3
    assert replay(policy, run([1000, 0, 0], [0, 1000, 0]), ENV)[0] == 2
    assert replay(policy, run([1000, 1, 1], [0, 999, 999]), ENV)[0] == 3


def test_lxd_nothing_seen_after_the_first_pre_dump_is_final() -> None:
    assert replay(LxdPolicy(max_iterations=9), run([1000, 0]), ENV)[0] == 2


@given(
    n=st.integers(1, 12),
    goal=st.integers(1, 100),
    pages=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), min_size=12, max_size=12),
)
def test_lxd_count_matches_its_definition(n: int, goal: int, pages: list[tuple[int, int]]) -> None:
    written, skipped = [w for w, _ in pages], [s for _, s in pages]
    expected = n
    for k in range(2, n + 1):
        w, s = written[k - 1], skipped[k - 1]
        if w + s == 0 or Fraction(s, w + s) >= Fraction(goal, 100):
            expected = k
            break
    count, verdict = replay(LxdPolicy(n, goal), run(written, skipped), ENV)
    assert count == expected
    assert verdict.decision is Decision.FINAL


# --- p.haul ------------------------------------------------------------------------------


def test_phaul_defaults_are_phauls_constants() -> None:
    p = PhaulPolicy()
    assert (p.max_iterations, p.min_pages, p.max_growth_percent) == (8, 64, 10)


@pytest.mark.parametrize(
    "kwargs", [{"max_iterations": 0}, {"min_pages": -1}, {"max_growth_percent": -1}]
)
def test_phaul_rejects_bad_arguments(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PhaulPolicy(**kwargs)


@pytest.mark.parametrize(
    ("pages", "decision"), [(64, Decision.FINAL), (65, Decision.ITERATE), (0, Decision.FINAL)]
)
def test_phaul_small_dump_edge(pages: int, decision: Decision) -> None:
    assert PhaulPolicy().decide(run([pages]), ENV).decision is decision
    assert PhaulPolicy().decide(run([1000, pages]), ENV).decision is decision


@pytest.mark.parametrize(
    ("prev", "now", "decision"),
    [
        (1000, 1100, Decision.ITERATE),  # exactly +10%
        (1000, 1101, Decision.FINAL),  # +10.1%
        (100, 110, Decision.ITERATE),
        (100, 111, Decision.FINAL),
        (1000, 1000, Decision.ITERATE),
        (1000, 500, Decision.ITERATE),
    ],
)
def test_phaul_growth_edge(prev: int, now: int, decision: Decision) -> None:
    verdict = PhaulPolicy().decide(run([prev, now]), ENV)
    assert verdict.decision is decision


def test_phaul_growth_over_zero_pages_is_growth() -> None:
    assert PhaulPolicy(min_pages=0).decide(run([0, 1]), ENV).decision is Decision.FINAL


@pytest.mark.parametrize("written", [[1000] * 20, [5000 - 100 * i for i in range(20)]])
def test_phaul_runs_exactly_8_iterations(written: list[int]) -> None:
    count, verdict = replay(PhaulPolicy(), run(written), ENV)
    assert count == 8
    assert "max_iterations" in verdict.reason


@pytest.mark.parametrize("k", range(1, 9))
def test_phaul_small_dump_at_k_stops_after_k(k: int) -> None:
    assert replay(PhaulPolicy(), run([1000] * (k - 1) + [64] + [1000] * 9), ENV)[0] == k


@pytest.mark.parametrize("n", range(1, 10))
def test_phaul_max_iterations_is_exact(n: int) -> None:
    assert replay(PhaulPolicy(max_iterations=n), forever(), ENV)[0] == n


# --- budget ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_iterations": 0},
        {"max_downtime_ms": 0.0},
        {"max_downtime_ms": math.inf},
        {"bandwidth_window": 0},
        {"stall_window": 0},
        {"min_shrink_percent": 100.0},
        {"min_shrink_percent": -1.0},
    ],
)
def test_budget_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BudgetPolicy(postcopy_allowed=False, **kwargs)  # type: ignore[arg-type]


def test_budget_defaults() -> None:
    p = BudgetPolicy(postcopy_allowed=False)
    assert (p.max_downtime_ms, p.max_iterations) == (300.0, 30)


@pytest.mark.parametrize(("pages", "decision"), [(150, Decision.FINAL), (151, Decision.ITERATE)])
def test_budget_fits_at_once_edge(pages: int, decision: Decision) -> None:
    verdict = BudgetPolicy(postcopy_allowed=True).decide(run([pages]), PAGE_PER_MS)
    assert verdict.decision is decision
    assert verdict.predicted_downtime_ms == pytest.approx(150 + pages)
    assert not verdict.over_budget


@pytest.mark.parametrize("k", range(1, 9))
def test_budget_converges_after_k(k: int) -> None:
    written = [int(200 * 2 ** (k - i)) for i in range(1, k + 1)] + [0] * 5  # ..., 400, 200
    written[k - 1] = 140
    count, verdict = replay(BudgetPolicy(postcopy_allowed=True), run(written), PAGE_PER_MS)
    assert count == k
    assert verdict.decision is Decision.FINAL
    assert verdict.predicted_downtime_ms == pytest.approx(290)
    assert not verdict.over_budget


@pytest.mark.parametrize(
    ("allowed", "decision", "over"),
    [(True, Decision.SWITCH_TO_POSTCOPY, False), (False, Decision.FINAL, True)],
)
def test_budget_plateau(allowed: bool, decision: Decision, over: bool) -> None:
    # 480 -> 470 is < 10% below the best before them (500): the dirty set stopped shrinking.
    count, verdict = replay(
        BudgetPolicy(postcopy_allowed=allowed), run([1000, 500, 480, 470, 100]), PAGE_PER_MS
    )
    assert count == 4
    assert (verdict.decision, verdict.over_budget) == (decision, over)
    assert verdict.predicted_downtime_ms == pytest.approx(620)
    if not allowed:
        assert "will be missed" in verdict.reason


def test_budget_oscillation_counts_as_plateau() -> None:
    policy = BudgetPolicy(postcopy_allowed=True)
    count, verdict = replay(policy, run([5000, 1000, 2000, 1000, 2000]), PAGE_PER_MS)
    assert (count, verdict.decision) == (4, Decision.SWITCH_TO_POSTCOPY)


def test_budget_steady_shrinking_is_not_a_plateau() -> None:
    policy = BudgetPolicy(postcopy_allowed=True, max_iterations=50)
    written = [int(100_000 * 0.85**i) for i in range(50)]
    count, verdict = replay(policy, run(written), PAGE_PER_MS)
    assert verdict.decision is Decision.FINAL
    assert not verdict.over_budget
    assert written[count - 1] <= 150


@pytest.mark.parametrize("n", range(1, 8))
def test_budget_max_iterations_is_exact(n: int) -> None:
    written = [int(10**7 * 0.8**i) for i in range(n + 3)]  # shrinks 20% a step, never fits
    count, verdict = replay(
        BudgetPolicy(postcopy_allowed=True, max_iterations=n), run(written), PAGE_PER_MS
    )
    assert count == n
    assert verdict.decision is Decision.FINAL
    assert verdict.over_budget
    assert "max_iterations" in verdict.reason


def test_budget_measures_bandwidth_as_median_of_recent_iterations() -> None:
    policy = BudgetPolicy(postcopy_allowed=True)
    hist = [
        IterationStats(1, 1, 0, 1, 999, 1.0),
        IterationStats(2, 1, 0, 1, 100, 1.0),
        IterationStats(3, 1, 0, 1, 300, 1.0),
        IterationStats(4, 1, 0, 1, 200, 0.1),
        IterationStats(5, 1, 0, 1, 0, 0.0),
    ]
    assert policy.bandwidth(hist, ENV) == pytest.approx(1150)  # median(300, 2000): 5 skipped
    assert policy.bandwidth(hist, PAGE_PER_MS) == 4096 * 1000
    assert policy.bandwidth([IterationStats(1, 1, 0, 1, 4096, 0.0)], ENV) is None


def test_budget_without_bandwidth_iterates_then_finishes_at_max() -> None:
    hist = [IterationStats(1, 10, 0, 10, 40960, 0.0)]
    v = BudgetPolicy(postcopy_allowed=False, max_iterations=2).decide(hist, ENV)
    assert (v.decision, v.predicted_downtime_ms) == (Decision.ITERATE, None)
    hist.append(IterationStats(2, 9, 0, 9, 36864, 0.0))
    v = BudgetPolicy(postcopy_allowed=False, max_iterations=2).decide(hist, ENV)
    assert (v.decision, v.over_budget) == (Decision.FINAL, True)


def test_budget_nothing_dirty_costs_only_the_fixed_part() -> None:
    v = BudgetPolicy(postcopy_allowed=False).decide([IterationStats(1, 0, 0, 0, 0, 0.0)], ENV)
    assert (v.decision, v.predicted_downtime_ms) == (Decision.FINAL, 150.0)


def test_budget_fixed_cost_over_budget_never_fits() -> None:
    env = Environment(fixed_cost_ms=400.0, bandwidth_bytes_per_s=1e12)
    count, verdict = replay(BudgetPolicy(postcopy_allowed=False), run([1000, 10, 10, 10]), env)
    assert (count, verdict.decision, verdict.over_budget) == (4, Decision.FINAL, True)


written_runs = st.lists(st.integers(0, 100_000), min_size=12, max_size=12)


@given(
    written=written_runs, bw=st.floats(1e3, 1e10), factor=st.floats(1.0, 1e3), allowed=st.booleans()
)
def test_budget_more_bandwidth_never_iterates_longer(
    written: list[int], bw: float, factor: float, allowed: bool
) -> None:
    policy = BudgetPolicy(postcopy_allowed=allowed, max_iterations=12)
    slow = replay(policy, run(written), Environment(bandwidth_bytes_per_s=bw))
    fast = replay(policy, run(written), Environment(bandwidth_bytes_per_s=bw * factor))
    assert fast[0] <= slow[0]


@given(
    written=written_runs,
    seconds=st.lists(st.floats(0.001, 100.0), min_size=12, max_size=12),
    factor=st.floats(1.0, 1e3),
)
def test_budget_faster_measured_iterations_never_iterate_longer(
    written: list[int], seconds: list[float], factor: float
) -> None:
    def record(scale: float) -> list[IterationStats]:
        return [
            it(i, w, seconds=s / scale)
            for i, (w, s) in enumerate(zip(written, seconds, strict=True), start=1)
        ]

    policy = BudgetPolicy(postcopy_allowed=True, max_iterations=12)
    assert replay(policy, record(factor), ENV)[0] <= replay(policy, record(1.0), ENV)[0]


@given(
    written=written_runs,
    bw=st.floats(1e3, 1e10),
    allowed=st.booleans(),
    max_iterations=st.integers(1, 12),
)
def test_budget_verdicts_are_consistent(
    written: list[int], bw: float, allowed: bool, max_iterations: int
) -> None:
    policy = BudgetPolicy(postcopy_allowed=allowed, max_iterations=max_iterations)
    count, v = replay(policy, run(written), Environment(bandwidth_bytes_per_s=bw))
    assert 1 <= count <= max_iterations
    assert v.predicted_downtime_ms is not None
    fits = v.predicted_downtime_ms <= policy.max_downtime_ms
    if v.decision is Decision.SWITCH_TO_POSTCOPY:
        assert allowed
        assert not fits
    else:
        assert v.decision is Decision.FINAL
        assert v.over_budget is not fits


# ----------------------------------------------------------------------------- fit_transfer

def test_fit_transfer_separates_overhead_from_transfer() -> None:
    # 0.5 s overhead + 10 MB/s: a 400 KB pre-dump is mostly overhead, yet counts right
    its = [IterationStats(i + 1, b // 4096, 0, 0, b, 0.5 + b / 10e6)
           for i, b in enumerate([100_000_000, 4_096_000, 409_600])]
    fit = fit_transfer(its)
    assert fit is not None
    assert abs(fit.bytes_per_s - 10e6) < 1e-3 * 10e6
    assert abs(fit.overhead_s - 0.5) < 1e-6


def test_fit_transfer_never_reports_a_negative_overhead() -> None:
    its = [IterationStats(1, 100, 0, 0, 409_600, 0.01), IterationStats(2, 1, 0, 0, 4096, 0.0)]
    assert fit_transfer(its) == TransferFit(0.0, pytest.approx(405_504 / 0.01))


def test_fit_transfer_needs_two_sizes_and_a_rising_line() -> None:
    assert fit_transfer([]) is None
    one = IterationStats(1, 10, 0, 0, 40960, 1.0)
    assert fit_transfer([one]) is None
    assert fit_transfer([one, IterationStats(2, 10, 0, 0, 40960, 2.0)]) is None
    # more bytes in less time: no physical bandwidth to report
    assert fit_transfer([one, IterationStats(2, 20, 0, 0, 81920, 0.5)]) is None


@pytest.mark.parametrize("allowed", [True, False])
def test_budget_stops_when_nothing_is_left_to_copy_but_the_fixed_cost_misses(
        allowed: bool) -> None:
    """A workload that dirties nothing: more pre-dumps or lazy pages cannot help."""
    env = Environment(fixed_cost_ms=400.0, bandwidth_bytes_per_s=1e6)
    count, v = replay(BudgetPolicy(postcopy_allowed=allowed), run([1000, 0, 0]), env)
    assert (count, v.decision, v.over_budget) == (2, Decision.FINAL, True)
    assert v.predicted_downtime_ms == 400.0
    assert "nothing left to copy" in v.reason


# ----------------------------------------------------------------------------- final_dirty_pages

def test_final_dirty_pages_scales_with_the_shorter_last_pre_dump() -> None:
    # pre-dump 2 wrote 1000 pages dirtied during pre-dump 1 (10 s); it took 2 s itself
    hist = [it(1, 30000, seconds=10.0), it(2, 1000, seconds=2.0)]
    assert final_dirty_pages(hist) == 200


def test_final_dirty_pages_never_extrapolates_upwards() -> None:
    hist = [it(1, 300, seconds=1.0), it(2, 1000, seconds=3.0)]
    assert final_dirty_pages(hist) == 1000
    assert final_dirty_pages([it(1, 5000)]) == 5000
    assert final_dirty_pages([]) == 0
    assert final_dirty_pages([it(1, 10, seconds=0.0), it(2, 7, seconds=1.0)]) == 7


def test_budget_prediction_uses_the_scaled_dirty_set() -> None:
    hist = [it(1, 30000, seconds=10.0), it(2, 1000, seconds=2.0)]
    v = BudgetPolicy(postcopy_allowed=False, max_downtime_ms=400).decide(hist, PAGE_PER_MS)
    assert v.predicted_downtime_ms == 200 + 150.0
    assert v.decision is Decision.FINAL  # 1000 pages unscaled would predict 1150 ms
