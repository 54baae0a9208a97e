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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from ferryman import wire
from ferryman.agent.channel import Channel
from ferryman.agent.link import measure_link
from ferryman.agent.precopy import fixed_cost_ms
from ferryman.criu.client import Criu
from ferryman.criu.dryrun import DryRun, dry_run_dump, transient
from ferryman.criu.probe import probe_features
from ferryman.errors import FerrymanError, PreflightFailed
from ferryman.host.dirty import probe_dirty_rate
from ferryman.host.inspect import WorkloadFacts, inspect_workload
from ferryman.migration.checks import NodeFacts, dump_row, source_rows
from ferryman.migration.modes import choose_mode
from ferryman.migration.query import encode_query
from ferryman.migration.verdict import (
    LAZY_MODES,
    TRACKING_MODES,
    Row,
    Status,
    Verdict,
    merge,
    rows_from_json,
)
from ferryman.wire.messages import MAX_CHECK_JSON_BYTES

if TYPE_CHECKING:
    from ferryman.agent.source import SourceMigration

log = logging.getLogger(__name__)

SOURCE_MODES: Final = ("cold", "postcopy", "precopy", "hybrid")  # what agent/source.py does
AUTO: Final = "auto"  # migrate --mode auto: chosen here, from the verdict's allowed modes
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


async def collect_verdict(ch: Channel, criu: Criu, ours: wire.Hello, theirs: wire.Hello, *,
                          pid: int, workdir: Path, requested: str | None,
                          synced: Sequence[str] = (), timeout: float = 120.0,
                          dry_run_unless_refused: bool = False, moved: Sequence[str] = (),
                          tcp_established: bool = False) -> CheckResult:
    """Ask the destination and check here; the connection is back in GREETED afterwards.

    With ``dry_run_unless_refused`` (migrate) the dry-run dump is skipped when the
    destination's rows already rule ``requested`` out: nothing is frozen for nothing.
    """
    workload = inspect_workload(pid)
    if moved:  # those addresses come along with the workload (--move-address)
        workload = replace(workload, sockets=tuple(s for s in workload.sockets
                                                   if s.local_ip not in moved))
    query = encode_query(workload, synced, budget=MAX_CHECK_JSON_BYTES)
    await ch.send(wire.CheckRequest(query))
    report = await ch.expect((wire.CheckReport,), timeout)
    dest_node, dest_modes, dest_rows = rows_from_json(report.result)
    features = dict(ours.features)
    features.update(await probe_features(criu.binary))
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
        result = await dry_run_dump(criu, pid, dry_dir, tcp_established=tcp_established)
        if transient(result):
            log.info("dry-run dump of PID %d raced with its connections' traffic (%s): once "
                     "more", pid, result.reason)
            result = await dry_run_dump(criu, pid, dry_dir, tcp_established=tcp_established)
        log.info("dry-run dump of PID %d: ok=%s, frozen <= %s ms", pid, result.ok,
                 f"{result.freeze_ms:.1f}" if result.freeze_ms is not None else "?")
        dump = dump_row(result.ok, result.freeze_ms, result.reason, str(result.log_path),
                        result.image_bytes)
    rows = source_rows(workload, here, theirs.criu_version, dest_node, dump)
    verdict = merge(rows, dest_rows, supported, requested)
    return CheckResult(verdict, workload, dest_node, dry_dir / "dry-run.log", result)


def refusal(verdict: Verdict, mode: str, *, force: bool) -> PreflightFailed | None:
    """Why ``ferryman migrate --mode MODE`` must not go on, or None."""
    if mode not in verdict.supported:
        return PreflightFailed(f"mode {mode} is not supported by both nodes",
                               failed=[], hint=f"use one of: {', '.join(verdict.supported)}")
    blocking = verdict.blocking(mode, force=force)
    if not blocking:
        return None
    fails = [r for r in blocking if r.status is Status.FAIL]
    first = (fails or blocking)[0]
    if fails:
        what = "; ".join(f"{r.check}: {r.detail}" for r in fails)
        hint = first.fix
    else:
        what = "warnings: " + "; ".join(f"{r.check}: {r.detail}" for r in blocking)
        hint = f"{first.fix}; or accept the warnings with --force"
    return PreflightFailed(f"pre-flight check refused {mode} migration: {what}",
                           failed=[r.check for r in blocking], hint=hint)


async def end_check(ch: Channel, reason: str) -> None:
    """End a conversation still in GREETED: Abort, and the destination's Aborted."""
    await ch.send(wire.Abort(reason))
    try:
        await ch.expect((wire.Aborted,), ABORT_TIMEOUT)
    except FerrymanError as exc:
        log.info("destination did not acknowledge the end of the check: %s", exc)


async def check_before_plan(m: SourceMigration, ours: wire.Hello, theirs: wire.Hello) -> None:
    """``ferryman migrate``'s gate, between Hello and Plan: raises PreflightFailed (after
    ending the conversation cleanly) instead of letting a doomed migration freeze anything."""
    assert m.ch is not None
    o = m.o
    policy = o.preflight if isinstance(o, HasPreflightPolicy) else PreflightPolicy()
    if policy.skip:
        log.warning("pre-flight check skipped (test-only option)")
        return
    o.progress("CHECKING", "pre-flight checks on both nodes")
    requested = None if o.mode == AUTO else o.mode
    result = await collect_verdict(m.ch, m.criu, ours, theirs, pid=o.pid, workdir=m.workdir,
                                   requested=requested, synced=policy.synced,
                                   timeout=o.timeouts.plan, dry_run_unless_refused=True,
                                   moved=policy.moved, tcp_established=o.tcp_established)
    v = result.verdict
    m.report.logs["dry-run"] = str(result.dump_log)
    if result.dry_run is not None and result.dry_run.ok:
        m.report.dry_run_freeze_ms = result.dry_run.freeze_ms
    mode = o.mode if requested is not None else await choose_auto_mode(m, v)
    why = refusal(v, mode, force=policy.force) if mode is not None else PreflightFailed(
        "pre-flight check: no mode can move this workload",
        failed=[r.check for r in v.failures()],
        hint=v.failures()[0].fix if v.failures() else "see 'ferryman check'")
    if why is not None:
        await end_check(m.ch, "pre-flight check failed")
        raise why
    assert mode is not None
    if requested is None:
        o.mode = m.report.mode = mode  # what the rest of the migration carries out
        o.progress("CHECKING", f"--mode auto chose {mode} (allowed: "
                   f"{', '.join(v.allowed_modes)}): {m.report.mode_reason}")
    warned = v.warnings(mode)
    o.progress("CHECKING", f"passed ({len(warned)} warnings accepted with --force)" if warned
               else "passed")


async def choose_auto_mode(m: SourceMigration, v: Verdict) -> str | None:
    """``--mode auto``: :func:`ferryman.migration.modes.choose_mode` over what the verdict
    allows, with the workload's dirty rate measured (soft-dirty, half a second) when the
    source can track it; the reason goes into the report. None if no mode is allowed."""
    pc = m.o.precopy
    candidates = v.auto_candidates(no_postcopy=pc.no_postcopy)
    if not candidates:
        return None
    tracking = bool(TRACKING_MODES & set(candidates))
    lazy = bool(LAZY_MODES & set(candidates))
    rate = None
    if tracking and m.tree is not None:
        rate = await asyncio.to_thread(probe_dirty_rate, m.tree.pids())
    link, how = await _link(m)
    cap = m.report.max_bandwidth_bytes_per_s
    if cap is not None and cap < link:
        link, how = cap, "capped by --max-bandwidth at"
    choice = choose_mode(mem_track=tracking, lazy_pages=lazy, no_postcopy=pc.no_postcopy,
                         rss_bytes=m.report.rss_bytes, dirty_pages_per_s=rate,
                         bandwidth_bytes_per_s=link,
                         max_downtime_ms=pc.max_downtime_ms,
                         fixed_cost_ms=fixed_cost_ms(m.report.dry_run_freeze_ms,
                                                     pc.fixed_cost_ms))
    # candidates: warning-free first, cold before post-copy (never risks the workload)
    mode = str(choice.mode) if choice.mode in candidates else candidates[0]
    reason = choice.reason
    if mode != choice.mode:
        reason += f"; {choice.mode} is not allowed here, so {mode}"
    m.report.mode_reason = f"{reason} (link {how} {link / 125_000:.0f} Mbit/s" + (
        f", dirty rate measured {rate:.0f} pages/s)" if rate is not None else ")")
    return mode


async def _link(m: SourceMigration) -> tuple[float, str]:
    """The link rate for the choice (bytes/s), and whether it was 'assumed' or 'measured'."""
    pc = m.o.precopy
    if pc.link_mbps is not None:
        return pc.link_mbps * 125_000, "assumed"
    assert m.ch is not None
    m.o.progress("CHECKING", "timing the link")
    rate = await measure_link(m.ch, m.o.timeouts.plan)
    m.report.link_bytes_per_s = rate
    if rate is None:  # too fast for a 4 MiB test to tell apart from its round trip
        return UNMEASURABLE_LINK_MBPS * 125_000, "faster than this test tells, taken as"
    return rate, "measured"
