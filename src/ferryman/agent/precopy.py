"""The SOURCE's pre-copy iterations: pre-dump into the destination until the policy stops.

Each iteration is a ``criu pre-dump --track-mem`` of the running workload (``runc checkpoint
--pre-dump`` for a container; frozen only while CRIU collects its page map, milliseconds)
streaming the pages into a page server the
destination opened for that image set; set ``pre-K`` is the child of ``pre-(K-1)`` on both
nodes, so each one carries only what the workload dirtied since. After every pre-dump the
convergence policy (pure, :mod:`ferryman.migration.convergence`) says ITERATE, FINAL or
SWITCH_TO_POSTCOPY; then the source asks for the final set (an ``Iterate(final=True)``,
lazy when switching or in hybrid mode) and the usual final dump follows, with ``pre-N`` as
its parent. Nothing is frozen between iterations: a failure here is rolled back by telling
the destination to drop its image sets; the workload never stopped running.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Final

from ferryman import wire
from ferryman.agent.files import SET_PREFIX, Receiver, TransferError, set_name
from ferryman.criu.client import PageServerAddress, TlsFiles
from ferryman.criu.stats import DUMP_STATS, read_stats
from ferryman.errors import FerrymanError, MigrationRolledBack, RemoteError, UsageError
from ferryman.migration.convergence import (
    BudgetPolicy,
    ConvergencePolicy,
    Decision,
    Environment,
    IterationStats,
    LxdPolicy,
    PhaulPolicy,
    TransferFit,
    Verdict,
    fit_transfer,
    from_criu_stats,
)
from ferryman.migration.phases import SourcePhase

if TYPE_CHECKING:
    from ferryman.agent.source import SourceMigration

log = logging.getLogger(__name__)
S = SourcePhase
POLICIES: Final = ("budget", "lxd", "phaul")
ABORT_TIMEOUT: Final = 10.0


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


@dataclass(frozen=True, slots=True)
class FinalStep:
    """What the iterations ended with: the final set's page-server port (0 when lazy)."""

    port: int
    lazy: bool
    parent: str
    verdict: Verdict


async def run_iterations(m: SourceMigration, first_port: int, *, hybrid: bool,
                         postcopy_allowed: bool) -> FinalStep:
    """Pre-dump until the policy stops; returns the final set's page server (see module doc).

    Raises MigrationRolledBack (the destination dropped its sets; the workload ran on).
    """
    opts = m.o.precopy
    policy = opts.make_policy(postcopy_allowed=postcopy_allowed)
    predictor = BudgetPolicy(postcopy_allowed=False, max_downtime_ms=opts.max_downtime_ms)
    fixed = fixed_cost_ms(m.report.dry_run_freeze_ms, opts.fixed_cost_ms)
    history: list[IterationStats] = []
    cap = m.report.max_bandwidth_bytes_per_s
    env = environment(fixed, None, cap_bytes_per_s=cap)
    port, restore_rate = first_port, 0
    try:
        while (verdict := policy.decide(history, env)).decision is Decision.ITERATE:
            index = len(history) + 1
            if index > 1:
                ready = await _next_set(m, wire.Iterate(index))
                port, restore_rate = ready.page_server_port, \
                    ready.restore_bytes_per_s or restore_rate
            history.append(await _pre_dump(m, index, port))
            restore_ms = m.report.rss_bytes / restore_rate * 1000 if restore_rate else 0.0
            fit = fit_transfer(history)
            if m.box is not None and m.report.dry_run_freeze_ms is None:
                fixed = container_objects_ms(fit, m.report.sync.get("presync_ms"),
                                             opts.fixed_cost_ms)
            env = environment(fixed, fit, restore_ms, cap)
            predicted = predictor.predict_ms(history, env)
            m.report.iterations[-1]["predicted_downtime_ms"] = predicted
        lazy = hybrid or verdict.decision is Decision.SWITCH_TO_POSTCOPY
        ready = await _next_set(m, wire.Iterate(len(history) + 1, final=True, lazy=lazy))
        port = ready.page_server_port
    except (FerrymanError, OSError) as exc:
        await _abandon(m, exc)
        raise AssertionError("unreachable") from exc  # _abandon always raises
    r = m.report
    r.policy = opts.policy
    r.convergence = f"{verdict.decision}: {verdict.reason}"
    r.predicted_downtime_ms = (verdict.predicted_downtime_ms
                               if verdict.predicted_downtime_ms is not None
                               else predictor.predict_ms(history, env))
    r.over_budget = verdict.over_budget
    r.fixed_cost_ms = env.fixed_cost_ms
    r.restore_bytes_per_s = restore_rate or None
    r.bandwidth_bytes_per_s = env.bandwidth_bytes_per_s
    r.switched_to_postcopy = verdict.decision is Decision.SWITCH_TO_POSTCOPY
    if r.switched_to_postcopy:
        r.mode = "hybrid"
    m.o.progress("ITERATING", f"{len(history)} pre-dumps; {verdict.reason}"
                 + ("; final step lazy" if lazy else ""))
    return FinalStep(port, lazy, set_name(len(history)), verdict)


async def _next_set(m: SourceMigration, msg: wire.Iterate) -> wire.Ready:
    """Ask the destination for the page server of the next image set (port 0: lazy).

    Before a lazy final set the destination sends back the page maps of its sets, as
    ``pre-K.NAME``: they go into our ``pre-K`` (see :meth:`DestinationSession._send_page_maps`).
    """
    assert m.ch is not None
    await m.ch.send(msg)
    staging = m.workdir / "page-maps"
    staging.mkdir(exist_ok=True)
    receiver = Receiver(staging)
    try:
        while True:
            got = await m.ch.expect((wire.Ready, wire.FileChunk, wire.FileEnd),
                                    m.o.timeouts.plan)
            if isinstance(got, wire.Ready):
                break
            receiver.take(got)
    except TransferError as exc:
        raise FerrymanError(f"page maps from the destination: {exc}") from exc
    finally:
        receiver.close()
    for name in receiver.done:
        set_dir, _, file = name.partition(".")
        target = m.workdir / set_dir
        if not (set_dir.startswith(SET_PREFIX) and target.is_dir() and file):
            raise FerrymanError(f"page maps from the destination: unexpected file {name!r}")
        (staging / name).rename(target / file)
    staging.rmdir()
    return got


async def _pre_dump(m: SourceMigration, index: int, port: int) -> IterationStats:
    m.tracker.advance(S.ITERATING)
    c = m.o.creds
    images = m.workdir / set_name(index)
    images.mkdir()
    m.o.progress("ITERATING", f"pre-dump {index} while the workload runs")
    t0 = time.monotonic()
    await m.dumper.dump(m.o.pid, images, pre_dump=True, track_mem=True,
                      parent=f"../{set_name(index - 1)}" if index > 1 else None,
                      page_server=PageServerAddress(m.o.host, port),
                      tls=TlsFiles(cacert=c.ca, cert=c.cert, key=c.key),
                      log_file="pre-dump.log")
    seconds = time.monotonic() - t0
    stats = read_stats(images / DUMP_STATS)
    it = from_criu_stats(index, stats, seconds)
    m.report.iterations.append({**asdict(it), "frozen_ms": stats.get("frozen_time", 0) / 1000,
                                "predicted_downtime_ms": None})
    m.report.count_pages()
    m.o.progress("ITERATING", f"pre-dump {index}: {it.pages_written} pages written, "
                 f"{it.pages_skipped} unchanged, {seconds:.2f} s")
    log.info("pre-dump %d: %d pages written, %d skipped, %.3f s", index, it.pages_written,
             it.pages_skipped, seconds)
    return it


async def _abandon(m: SourceMigration, exc: BaseException) -> None:
    """A failed iteration: the workload runs on; the destination drops its sets."""
    ch = m.ch
    if ch is not None and ch.conn.state in wire.ABORTABLE_STATES:
        try:
            await ch.send(wire.Abort(reason=str(exc)[:4000]))
            await ch.expect((wire.Aborted,), ABORT_TIMEOUT)
        except FerrymanError as err:
            log.info("destination did not acknowledge the abort: %s", err)
    m.tracker.advance(S.ROLLED_BACK)
    m.report.result = "rolled_back"
    code = exc.code if isinstance(exc, RemoteError) else ""
    raise MigrationRolledBack(getattr(exc, "message", str(exc)),
                              hint=getattr(exc, "hint", None), cause_code=code) from exc
