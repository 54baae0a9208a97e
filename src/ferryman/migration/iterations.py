"""Pre-copy's loop, the pure part: after each pre-dump, what the policy rules and predicts.

Pure: the SOURCE driver (migration/source_driver.py) owns one and feeds it what the agent
measured (each pre-dump's :class:`IterationStats`, the destination's read rate from its
Ready); it answers the policy's ruling and the downtime the budget model predicts. The
inputs known before the first pre-dump (the dry run's freeze, a container's pre-sync, the
RSS, ``--max-bandwidth``) are given once, at construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ferryman.migration.convergence import (
    BudgetPolicy,
    ConvergencePolicy,
    Decision,
    Environment,
    IterationStats,
    Ruling,
    fit_transfer,
)
from ferryman.migration.precopy_plan import (
    PrecopyOptions,
    container_objects_ms,
    environment,
    fixed_cost_ms,
)

__all__ = ["Convergence", "Summary"]


@dataclass(frozen=True, slots=True)
class Summary:
    """What the report says of the iterations once the policy stopped them."""

    policy: str
    convergence: str
    predicted_downtime_ms: float | None
    over_budget: bool
    fixed_cost_ms: float
    restore_bytes_per_s: int | None
    bandwidth_bytes_per_s: float | None
    switched_to_postcopy: bool


@dataclass
class Convergence:
    """The iterations so far, the policy and the environment it rules with."""

    opts: PrecopyOptions
    postcopy_allowed: bool
    rss_bytes: int
    dry_run_freeze_ms: float | None = None
    cap_bytes_per_s: float | None = None
    container: bool = False
    presync_ms: float | None = None
    history: list[IterationStats] = field(default_factory=list)
    restore_rate: int = 0
    policy: ConvergencePolicy = field(init=False)
    predictor: BudgetPolicy = field(init=False)
    fixed: float = field(init=False)
    env: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.policy = self.opts.make_policy(postcopy_allowed=self.postcopy_allowed)
        self.predictor = BudgetPolicy(postcopy_allowed=False,
                                      max_downtime_ms=self.opts.max_downtime_ms)
        self.fixed = fixed_cost_ms(self.dry_run_freeze_ms, self.opts.fixed_cost_ms)
        self.env = environment(self.fixed, None, cap_bytes_per_s=self.cap_bytes_per_s)

    def ruling(self) -> Ruling:
        return self.policy.decide(self.history, self.env)

    def set_ready(self, restore_bytes_per_s: int) -> None:
        """The destination's Ready for the next set: its read rate, once it measured one."""
        self.restore_rate = restore_bytes_per_s or self.restore_rate

    def add(self, it: IterationStats) -> float | None:
        """One more pre-dump; returns the downtime a final dump would have now."""
        self.history.append(it)
        rate = self.restore_rate
        restore_ms = self.rss_bytes / rate * 1000 if rate else 0.0
        fit = fit_transfer(self.history)
        if self.container and self.dry_run_freeze_ms is None:
            self.fixed = container_objects_ms(fit, self.presync_ms, self.opts.fixed_cost_ms)
        self.env = environment(self.fixed, fit, restore_ms, self.cap_bytes_per_s)
        return self.predictor.predict_ms(self.history, self.env)

    def summary(self, verdict: Ruling) -> Summary:
        predicted = (verdict.predicted_downtime_ms if verdict.predicted_downtime_ms is not None
                     else self.predictor.predict_ms(self.history, self.env))
        return Summary(policy=self.opts.policy,
                       convergence=f"{verdict.decision}: {verdict.reason}",
                       predicted_downtime_ms=predicted, over_budget=verdict.over_budget,
                       fixed_cost_ms=self.env.fixed_cost_ms,
                       restore_bytes_per_s=self.restore_rate or None,
                       bandwidth_bytes_per_s=self.env.bandwidth_bytes_per_s,
                       switched_to_postcopy=verdict.decision is Decision.SWITCH_TO_POSTCOPY)
