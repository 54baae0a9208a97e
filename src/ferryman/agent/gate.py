"""The source's pre-flight: ask the destination, dry-run the dump, decide before freezing.

:func:`collect_verdict` runs on an open control connection right after Hello: it inspects the
workload (/proc only), sends a CheckRequest, merges the destination's rows with the source's
own (its CRIU and kernel, a dry-run dump that freezes the workload for tens of milliseconds,
see :mod:`ferryman.criu.dryrun`). ``ferryman check`` prints the verdict; ``ferryman
migrate`` calls :func:`check_before_plan`, which refuses (Abort, then PreflightFailed) to
plan a migration the verdict rules out, or that has warnings without ``--force``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from ferryman import wire
from ferryman.agent.channel import Channel
from ferryman.agent.linkrate import MEASURED, link_rate
from ferryman.agent.steps import timed
from ferryman.criu.client import Criu
from ferryman.criu.dryrun import DryRun, dry_run_dump, transient
from ferryman.errors import FerrymanError, PreflightFailed
from ferryman.host import credentials, procfs, wptrack
from ferryman.host.dirty import probe_dirty_rate
from ferryman.host.inspect import WorkloadFacts, inspect_workload
from ferryman.migration.checks import NodeFacts, dump_row, source_rows
from ferryman.migration.modes import ModeChoice, choose_mode
from ferryman.migration.plan import Node, Plan, PlanOptions, decide, dirty_tracker
from ferryman.migration.precopy_plan import fixed_cost_ms
from ferryman.migration.query import encode_query
from ferryman.migration.verdict import (
    Row,
    Status,
    Verdict,
    merge,
    rows_from_json,
)
from ferryman.mode import MODES, Mode
from ferryman.wire.limits import MAX_CHECK_JSON_BYTES

if TYPE_CHECKING:
    from ferryman.agent.role import SourceRole

log = logging.getLogger(__name__)

SOURCE_MODES: Final = MODES  # what agent/source.py does: every mode
ABORT_TIMEOUT: Final = 10.0
UNMEASURABLE_LINK_MBPS: Final = 10_000.0  # auto: a link the link test cannot time


@dataclass(frozen=True, slots=True)
class PreflightPolicy:
    """How ``ferryman migrate`` uses the verdict: ``force`` lets warnings pass (never
    failures); files under ``synced`` paths are not compared (they will be synced).
    ``skip`` (test-only) skips the check, to reach the failures it would prevent."""

    force: bool = False
    synced: tuple[str, ...] = ()
    skip: bool = False
    moved: tuple[str, ...] = ()  # addresses --move-address brings to the destination


@runtime_checkable
class HasPreflightPolicy(Protocol):
    """Source options that carry a policy (cli/migrate.py's); others get the default."""

    preflight: PreflightPolicy


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    workload: WorkloadFacts
    destination: str
    dump_log: Path
    dry_run: DryRun | None  # None when skipped
    link_timed: bool = False  # ferryman check: the link was timed alongside the dry run
    link_bytes_per_s: float | None = None  # its rate (None: too fast for the test)


async def collect_verdict(ch: Channel, criu: Criu, ours: wire.Hello, theirs: wire.Hello, *,
                          pid: int, workdir: Path, requested: Mode | None,
                          synced: Sequence[str] = (), timeout: float = 120.0,
                          dry_run_unless_refused: bool = False, moved: Sequence[str] = (),
                          tcp_established: bool = False,
                          steps: dict[str, float] | None = None,
                          alongside: Callable[[Verdict], Awaitable[None]] | None = None
                          ) -> CheckResult:
    """Ask the destination and check here; the connection is back in GREETED afterwards.

    With ``dry_run_unless_refused`` (migrate) the dry-run dump is skipped when the
    destination's rows already rule ``requested`` out: nothing is frozen for nothing.
    The ``criu check --feature`` probes run while the destination answers; ``alongside``
    (migrate's measurements for ``--compress auto`` and its Plan, check's link test: they
    may use the connection) while the dry run dumps, given the verdict of every row but the
    dry run's, and it is over when this returns. ``steps`` gets
    ``destination_rows``, ``feature_probes`` and ``dry_run`` (agent/steps.py).
    """
    steps = {} if steps is None else steps

    async def probes() -> dict[str, bool]:
        with timed(steps, "feature_probes"):
            return await criu.probes()

    workload = inspect_workload(pid)
    if moved:  # those addresses come along with the workload (--move-address)
        workload = replace(workload, sockets=tuple(s for s in workload.sockets
                                                   if s.local_ip not in moved))
    query = encode_query(workload, synced, budget=MAX_CHECK_JSON_BYTES)
    probing = asyncio.ensure_future(probes())  # local, while the destination answers
    try:
        with timed(steps, "destination_rows"):
            await ch.send(wire.CheckRequest(query))
            report = await ch.expect((wire.CheckReport,), timeout)
    finally:
        if not probing.done():
            await asyncio.wait({probing})
    dest_node, dest_modes, dest_rows = rows_from_json(report.result)
    features = dict(ours.features)
    features.update(probing.result())
    here = NodeFacts(ours.node, ours.criu_version, features)
    supported = [m for m in SOURCE_MODES if m in dest_modes]
    dry_dir = workdir / "dry-run"
    dry_dir.mkdir(parents=True, exist_ok=True)
    skipped = Row("dump", "source", Status.WARN, "dry-run dump skipped: the other checks "
                  "already rule this mode out", "fix the other failures first", frozenset())
    # the rows of both nodes without the dry run: when they already refuse, freeze nothing
    refused = merge(source_rows(workload, here, theirs.criu_version, dest_node, skipped),
                    dest_rows, supported, requested)
    result: DryRun | None = None
    if dry_run_unless_refused and requested is not None and not refused.can_move:
        dump = skipped
    else:
        side = asyncio.ensure_future(alongside(refused)) if alongside is not None else None
        try:
            with timed(steps, "dry_run"):
                result = await dry_run_dump(criu, pid, dry_dir,
                                            tcp_established=tcp_established)
                if transient(result):
                    log.info("dry-run dump of PID %d raced with its connections' traffic "
                             "(%s): once more", pid, result.reason)
                    result = await dry_run_dump(criu, pid, dry_dir,
                                                tcp_established=tcp_established)
        except BaseException:
            if side is not None:  # the connection is in use until it ends
                await asyncio.gather(side, return_exceptions=True)
            raise
        if side is not None:
            await side
        log.info("dry-run dump of PID %d: ok=%s, frozen <= %s ms", pid, result.ok,
                 f"{result.freeze_ms:.1f}" if result.freeze_ms is not None else "?")
        # why CRIU failed, when it is the tasks' credentials (read only after a failure)
        why = "" if result.ok else credentials.problem(procfs.tree(pid))
        dump = dump_row(result.ok, result.freeze_ms, result.reason, str(result.log_path),
                        result.image_bytes, credentials=why)
    rows = source_rows(workload, here, theirs.criu_version, dest_node, dump)
    verdict = merge(rows, dest_rows, supported, requested)
    return CheckResult(verdict, workload, dest_node, dry_dir / "dry-run.log", result)


async def end_check(ch: Channel, reason: str) -> None:
    """End a conversation still in GREETED: Abort, and the destination's Aborted."""
    await ch.send(wire.Abort(reason))
    try:
        await ch.expect((wire.Aborted,), ABORT_TIMEOUT)
    except FerrymanError as exc:
        log.info("destination did not acknowledge the end of the check: %s", exc)


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the gate found for :func:`ferryman.migration.plan.decide`: the verdict, and for
    ``--mode auto`` the measured choice with the facts it was measured on (for the report)."""

    verdict: Verdict
    auto: ModeChoice | None = None
    measured: str = ""


async def check_before_plan(role: SourceRole, ours: wire.Hello, theirs: wire.Hello,
                            alongside: Callable[[Verdict], Awaitable[None]] | None = None
                            ) -> Preflight | None:
    """``ferryman migrate``'s pre-flight, between Hello and Plan: the verdict (and auto's
    measurements). None when skipped (test-only). Nothing is decided here: see
    :func:`plan_migration`. ``alongside`` runs while the dry run dumps (collect_verdict)."""
    assert role.ch is not None
    opts = role.opts
    policy = preflight_policy(role)
    if policy.skip:
        log.warning("pre-flight check skipped (test-only option)")
        return None
    opts.progress("CHECKING", "pre-flight checks on both nodes")
    requested = opts.mode if opts.mode.decided else None
    result = await collect_verdict(role.ch, role.criu, ours, theirs, pid=role.pid,
                                   workdir=role.workdir,
                                   requested=requested, synced=policy.synced,
                                   timeout=opts.timeouts.plan, dry_run_unless_refused=True,
                                   moved=policy.moved, tcp_established=opts.tcp_established,
                                   steps=role.report.steps, alongside=alongside)
    v = result.verdict
    role.report.logs["dry-run"] = str(result.dump_log)
    if result.dry_run is not None and result.dry_run.ok:
        role.report.dry_run_freeze_ms = result.dry_run.freeze_ms
    if requested is not None:
        return Preflight(v)
    auto = await choose_auto_mode(role, v, ours.features)
    return Preflight(v) if auto is None else Preflight(v, *auto)


def decide_plan(role: SourceRole, ours: wire.Hello, theirs: wire.Hello, pre: Preflight | None
                ) -> Plan:
    """:func:`ferryman.migration.plan.decide` for this migration, nothing said or sent."""
    opts = role.opts
    return decide(opts.mode, verdict=pre.verdict if pre else None,
                  source=Node(ours.node, ours.features, ours.free_disk),
                  destination=Node(theirs.node, theirs.features, theirs.free_disk),
                  rss_bytes=role.report.rss_bytes,
                  options=PlanOptions(no_postcopy=opts.precopy.no_postcopy,
                                      force=preflight_policy(role).force,
                                      stream_cold=opts.stream_cold),
                  auto=pre.auto if pre else None, container=opts.in_container)


def preflight_policy(role: SourceRole) -> PreflightPolicy:
    opts = role.opts
    return opts.preflight if isinstance(opts, HasPreflightPolicy) else PreflightPolicy()


async def plan_migration(role: SourceRole, ours: wire.Hello, theirs: wire.Hello,
                         pre: Preflight | None) -> Plan:
    """:func:`ferryman.migration.plan.decide`, once. A refusal by the pre-flight ends the
    conversation cleanly (Abort) before PreflightFailed is raised; nothing was frozen."""
    assert role.ch is not None
    opts = role.opts
    try:
        plan = decide_plan(role, ours, theirs, pre)
    except PreflightFailed:
        await end_check(role.ch, "pre-flight check failed")
        raise
    if pre is None:
        return plan
    v = pre.verdict
    if not opts.mode.decided:
        role.report.mode_reason = f"{plan.reason} {pre.measured}"
        opts.progress("CHECKING", f"--mode auto chose {plan.mode} (allowed: "
                   f"{', '.join(v.allowed_modes)}): {role.report.mode_reason}")
    warned = v.warnings(plan.mode)
    opts.progress("CHECKING", f"passed ({len(warned)} warnings accepted with --force)" if warned
               else "passed")
    return plan


async def choose_auto_mode(role: SourceRole, v: Verdict, features: Mapping[str, bool]
                           ) -> tuple[ModeChoice, str] | None:
    """``--mode auto``'s measurements: :func:`ferryman.migration.modes.choose_mode` over
    what the verdict allows, with the workload's dirty rate measured (half a second, by the
    tracker pre-copy would use: soft-dirty, or uffd-wp where ``features`` have no
    soft-dirty) when the source can track it, and the link. The choice, and the facts it was
    made on as the report says them; None if no mode is allowed (nothing measured)."""
    precopy = role.opts.precopy
    candidates = v.auto_candidates(no_postcopy=precopy.no_postcopy)
    if not candidates:
        return None
    tracking = any(c.pre_copies for c in candidates)
    lazy = any(c.lazy for c in candidates)
    rate = None
    if tracking and role.tree is not None:
        uffd_wp = dirty_tracker(features, container=role.opts.in_container) == wptrack.TRACKER
        with timed(role.report.steps, "dirty_rate"):
            rate = await asyncio.to_thread(wptrack.probe_dirty_rate if uffd_wp
                                           else probe_dirty_rate, role.tree.pids())
    link, how = await _link(role)
    cap = role.report.max_bandwidth_bytes_per_s
    if cap is not None and cap < link:
        link, how = cap, "capped by --max-bandwidth at"
    choice = choose_mode(mem_track=tracking, lazy_pages=lazy, no_postcopy=precopy.no_postcopy,
                         rss_bytes=role.report.rss_bytes, dirty_pages_per_s=rate,
                         bandwidth_bytes_per_s=link,
                         max_downtime_ms=precopy.max_downtime_ms,
                         fixed_cost_ms=fixed_cost_ms(role.report.dry_run_freeze_ms,
                                                     precopy.fixed_cost_ms))
    measured = f"(link {how} {link / 125_000:.0f} Mbit/s" + (
        f", dirty rate measured {rate:.0f} pages/s)" if rate is not None else ")")
    return choice, measured


async def _link(role: SourceRole) -> tuple[float, str]:
    """The link rate for the choice (bytes/s), and how it is known (agent/linkrate.py)."""
    rate = await link_rate(role)
    how = role.report.link_source or MEASURED
    if rate is None:  # too fast for a 4 MiB test to tell apart from its round trip
        return UNMEASURABLE_LINK_MBPS * 125_000, f"{how}: faster than this test tells, taken as"
    return rate, how
