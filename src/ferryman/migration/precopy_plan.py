"""The pre-copy part of a migration's plan: options, the policy they make, the fixed-cost model.

Pure. :class:`PrecopyOptions` are ``ferryman migrate``'s pre-copy flags, checked when built;
:meth:`PrecopyOptions.make_policy` makes the convergence policy
(:mod:`ferryman.migration.convergence`) that agent/precopy.py asks after every pre-dump, and
:func:`environment` what the budget policy predicts with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ferryman.errors import UsageError
from ferryman.migration.convergence import (
    BudgetPolicy,
    ConvergencePolicy,
    Environment,
    LxdPolicy,
    PhaulPolicy,
    TransferFit,
)

__all__ = ["POLICIES", "PrecopyOptions", "container_objects_ms", "environment",
           "fixed_cost_ms"]

POLICIES: Final = ("budget", "lxd", "phaul")


@dataclass(frozen=True, slots=True)
class PrecopyOptions:
    """``--policy``, ``--max-iterations``, ``--goal``, ``--max-downtime``, ``--no-postcopy``.

    ``max_iterations`` None means the policy's own default (LXD 10, p.haul 8, budget 30).
    ``fixed_cost_ms``: the downtime a final dump costs without any dirty memory (freeze,
    non-memory images, restore, commit), measured on the test guests; the budget policy adds
    the dirty pages' transfer time to it.
    """

    policy: str = "budget"
    max_iterations: int | None = None
    goal_percent: float = 70.0
    max_downtime_ms: float = 300.0
    no_postcopy: bool = False
    fixed_cost_ms: float = 150.0
    link_mbps: float | None = None  # --mode auto: the link speed to assume (None: measure)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise UsageError(f"unknown policy {self.policy!r}",
                             hint=f"use one of: {', '.join(POLICIES)}")
        if self.max_iterations is not None and not 1 <= self.max_iterations <= 1000:
            raise UsageError(f"--max-iterations must be 1..1000, got {self.max_iterations}")
        if not 0 < self.goal_percent <= 100:
            raise UsageError(f"--goal must be in (0, 100], got {self.goal_percent}")
        if self.link_mbps is not None and not self.link_mbps > 0:
            raise UsageError(f"--link-mbps must be > 0, got {self.link_mbps}")
        if not self.max_downtime_ms > 0:
            raise UsageError(f"--max-downtime must be > 0 ms, got {self.max_downtime_ms}")

    def make_policy(self, *, postcopy_allowed: bool) -> ConvergencePolicy:
        n = self.max_iterations
        if self.policy == "lxd":
            return LxdPolicy(max_iterations=n or 10, goal_percent=self.goal_percent)
        if self.policy == "phaul":
            return PhaulPolicy(max_iterations=n or 8)
        return BudgetPolicy(postcopy_allowed=postcopy_allowed,
                            max_downtime_ms=self.max_downtime_ms, max_iterations=n or 30)


def fixed_cost_ms(dry_run_freeze_ms: float | None, default: float) -> float:
    """The objects' part of a final dump's downtime, from the pre-flight's dry run.

    The dry run (a lazy dump declined at post-dump) froze the workload for as long as the
    final dump needs to write everything but memory; restoring those objects on the
    destination costs about as much again. Without a dry run: ``default``.
    """
    return default if dry_run_freeze_ms is None else 2 * dry_run_freeze_ms


def container_objects_ms(fit: TransferFit | None, presync_ms: float | None,
                         default: float) -> float:
    """A runc container's :func:`fixed_cost_ms` (containers get no dry run): runc's own work
    once more on the destination (``runc restore`` sets up runc init, cgroups and namespaces
    much as ``runc checkpoint`` does; the pre-dumps' fitted overhead stands for it) and the
    final rsync while frozen, whose fixed cost the pre-sync showed (the TLS tunnel and two
    rsync processes). ``default`` until a pre-dump was fitted."""
    if fit is None:
        return default
    return fit.overhead_s * 1000 + (presync_ms or 0.0)


def environment(objects_ms: float, fit: TransferFit | None,
                restore_ms: float = 0.0, cap_bytes_per_s: float | None = None) -> Environment:
    """What the budget policy predicts with: the final dump's fixed cost and the link.

    Fixed cost = the objects' part (:func:`fixed_cost_ms`) + the pre-dumps' own fixed
    overhead (CRIU's TLS connection to the page server and the page-map scan: the final dump
    pays them too) + ``restore_ms``, the destination's time to read every page back from the
    image chain (it measures its read rate on the first set). Checked against the QEMU test
    guests' migrations (tests/vm, bench/vm). ``cap_bytes_per_s`` (``--max-bandwidth``): the
    link is taken as no faster than the cap, from before the first pre-dump on (the pre-dumps
    then run paced, and their fit sees it too).
    """
    if fit is None:
        return Environment(fixed_cost_ms=objects_ms + restore_ms,
                           bandwidth_bytes_per_s=cap_bytes_per_s)
    rate = fit.bytes_per_s if cap_bytes_per_s is None else min(fit.bytes_per_s, cap_bytes_per_s)
    return Environment(fixed_cost_ms=objects_ms + fit.overhead_s * 1000 + restore_ms,
                       bandwidth_bytes_per_s=rate)
