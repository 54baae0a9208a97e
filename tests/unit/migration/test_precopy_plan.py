"""Pre-copy options: policies with their defaults, validation, the fixed-cost estimate."""

from __future__ import annotations

import pytest

from ferryman.agent.files import set_name
from ferryman.errors import UsageError
from ferryman.migration.convergence import (
    BudgetPolicy,
    Environment,
    LxdPolicy,
    PhaulPolicy,
    TransferFit,
)
from ferryman.migration.precopy_plan import (
    PrecopyOptions,
    container_objects_ms,
    environment,
    fixed_cost_ms,
)


def test_policies_with_their_own_defaults() -> None:
    assert PrecopyOptions(policy="lxd").make_policy(postcopy_allowed=True) == LxdPolicy(10, 70)
    assert PrecopyOptions(policy="phaul").make_policy(postcopy_allowed=True) == PhaulPolicy(8)
    budget = PrecopyOptions().make_policy(postcopy_allowed=False)
    assert budget == BudgetPolicy(postcopy_allowed=False, max_downtime_ms=300, max_iterations=30)


def test_options_reach_the_policy() -> None:
    o = PrecopyOptions(policy="lxd", max_iterations=3, goal_percent=100)
    assert o.make_policy(postcopy_allowed=False) == LxdPolicy(3, 100)
    o = PrecopyOptions(max_iterations=5, max_downtime_ms=50)
    assert o.make_policy(postcopy_allowed=True) == BudgetPolicy(
        postcopy_allowed=True, max_downtime_ms=50, max_iterations=5)
    assert PrecopyOptions(policy="phaul", max_iterations=2).make_policy(
        postcopy_allowed=True) == PhaulPolicy(2)


@pytest.mark.parametrize(("kw", "words"), [
    ({"policy": "qemu"}, "unknown policy"),
    ({"max_iterations": 0}, "--max-iterations"),
    ({"max_iterations": 1001}, "--max-iterations"),
    ({"goal_percent": 0}, "--goal"),
    ({"goal_percent": 101}, "--goal"),
    ({"max_downtime_ms": 0}, "--max-downtime"),
])
def test_bad_options_are_usage_errors(kw: dict[str, object], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        PrecopyOptions(**kw)  # type: ignore[arg-type]


def test_fixed_cost_is_dump_and_restore_of_the_dry_run() -> None:
    assert fixed_cost_ms(None, 150.0) == 150.0
    assert fixed_cost_ms(40.0, 150.0) == 80.0


def test_set_names() -> None:
    assert [set_name(i) for i in (1, 2, 10)] == ["pre-1", "pre-2", "pre-10"]


def test_environment_adds_the_pre_dumps_overhead() -> None:
    assert environment(300.0, None) == Environment(fixed_cost_ms=300.0)
    env = environment(300.0, TransferFit(overhead_s=0.8, bytes_per_s=1e7))
    assert env == Environment(fixed_cost_ms=1100.0, bandwidth_bytes_per_s=1e7)
    env = environment(300.0, TransferFit(overhead_s=0.8, bytes_per_s=1e7), 500.0)
    assert env.fixed_cost_ms == 1600.0
    assert environment(300.0, None, 500.0) == Environment(fixed_cost_ms=800.0)


def test_the_bandwidth_cap_bounds_the_predictions_link() -> None:
    cap = 25e6  # --max-bandwidth 200
    assert environment(300.0, None, cap_bytes_per_s=cap) == Environment(
        fixed_cost_ms=300.0, bandwidth_bytes_per_s=cap)
    fast = TransferFit(overhead_s=0.1, bytes_per_s=4e8)
    assert environment(300.0, fast, 0.0, cap).bandwidth_bytes_per_s == cap
    slow = TransferFit(overhead_s=0.1, bytes_per_s=1e7)  # the link is slower than the cap
    assert environment(300.0, slow, 0.0, cap).bandwidth_bytes_per_s == 1e7
    # a budget prediction with the cap: 10^4 dirty pages take 1.64 s at 200 Mbit/s
    env = environment(300.0, fast, 0.0, cap)
    assert BudgetPolicy(postcopy_allowed=False, max_downtime_ms=300).bandwidth([], env) == cap


def test_a_containers_final_step_pays_runc_again_and_the_final_rsync() -> None:
    # the guests' runc pre-copy: pre-dumps of 8294 and 33 pages fit to ~0.89 s of overhead,
    # the pre-sync took 2.0 s; the measured downtime was 4.09 s (predicted 1.08 s before)
    fit = TransferFit(overhead_s=0.894, bytes_per_s=8.5e6)
    assert container_objects_ms(None, 1997.0, 150.0) == 150.0
    assert container_objects_ms(fit, 1997.0, 150.0) == pytest.approx(894.0 + 1997.0)
    assert container_objects_ms(fit, None, 150.0) == pytest.approx(894.0)
    env = environment(container_objects_ms(fit, 1997.0, 150.0), fit, 36.0)
    assert env.fixed_cost_ms == pytest.approx(2 * 894.0 + 1997.0 + 36.0)
