"""The SOURCE driver's actions, carried out: the thin shell around migration/source_driver.py.

:class:`SourceDrive` feeds the driver events and does what it answers, one action after the
other. What happens meanwhile (CRIU's notifications and the dump's end, the destination's
Restored, Committed, PagesComplete, a read that fails) arrives from tasks through a queue
and is fed in only once the current batch is done. An action that raises becomes a
``Failed`` event naming it; the driver says what follows (docs/ARCHITECTURE.md, section 4).
Every event fed is logged at debug level: a migration's log lists the events a unit test
feeds the driver to replay it (tests/unit/migration/test_source_driver.py).

The decisions are all the driver's; this module only knows how (CRIU, the channel, the
report). A task of its own that breaks (a bug) ends the migration with that error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ferryman import wire
from ferryman.agent import commit, precopy
from ferryman.agent.compression import dump_through_relay
from ferryman.agent.container import source_final_sync, source_presync
from ferryman.agent.files import set_name
from ferryman.agent.postcopy import continue_left_stopped
from ferryman.agent.role import SourceRole
from ferryman.agent.source_outcome import conclude
from ferryman.agent.source_report import record_iterations, record_pages
from ferryman.criu.client import PageServerAddress, TlsFiles
from ferryman.criu.page_server import free_port
from ferryman.errors import (
    FerrymanError,
    PeerLost,
)
from ferryman.host import portguard
from ferryman.migration.commit import Step
from ferryman.migration.phases import SourcePhase
from ferryman.migration.source_driver import SourceDriver
from ferryman.migration.source_events import (
    Abandon,
    Action,
    AnswerNotify,
    AskSet,
    AwaitDumpEnd,
    AwaitPagesComplete,
    AwaitRestored,
    CollectDumpStats,
    CommitSent,
    CommitStep,
    Committed,
    ContinueLeftStopped,
    DumpEnded,
    DumpGraceOver,
    Enter,
    Event,
    Failed,
    FinalSync,
    FindNetworkLock,
    Finish,
    FreezeWindow,
    GuardLeftStopped,
    KeepShared,
    KillSurvivors,
    KillTree,
    MoveAddressAway,
    Notified,
    Outcome,
    PagesComplete,
    PreDumpDone,
    PresyncDone,
    RecordIterations,
    RecordPages,
    RecordPrediction,
    Restored,
    RollBack,
    RolledBack,
    RunDump,
    RunPreDump,
    RunPresync,
    SendRestore,
    SetReady,
    ShipImages,
    Started,
    StopDump,
    ThawCgroup,
)
from ferryman.targets.workload import Workload

__all__ = ["SourceDrive"]

log = logging.getLogger(__name__)
S = SourcePhase
T = TypeVar("T")
# Their errors end the migration as they are: the driver has nothing left to decide.
_LAST_WORDS = (RollBack, Abandon, StopDump, ContinueLeftStopped, KillTree)


class SourceDrive:
    def __init__(self, role: SourceRole, driver: SourceDriver,
                 workload: Workload | None = None) -> None:
        self.role = role
        self.driver = driver
        self.workload = workload
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.failure: BaseException | None = None  # the first: what a roll-back says
        self.answer: asyncio.Future[bool] | None = None  # CRIU waits for it (a notification)
        self.dump: asyncio.Future[None] | None = None
        self.reads: set[asyncio.Future[None]] = set()
        self.commit_error: PeerLost | None = None  # cold: the Commit may not have arrived
        self.confirm_error: FerrymanError | None = None  # cold: no Committed
        self.tail: wire.PagesComplete | None = None
        self.outcome: Outcome | None = None
        self.bug: Exception | None = None

    async def run(self, port: int) -> None:
        """From the destination's Ready (the first page server's ``port``) to the end."""
        pending: deque[Action] = deque(self._feed(Started(port)))
        try:
            while pending or not self.driver.done:
                if not pending:
                    observed = await self.events.get()
                    if self.bug is not None:  # a task of ours broke: let it show
                        raise self.bug
                    pending.extend(self._feed(observed))
                    continue
                action = pending.popleft()
                try:
                    event = await self._do(action)
                except (FerrymanError, OSError) as exc:
                    if isinstance(action, _LAST_WORDS):
                        raise
                    self._fail(exc)
                    pending.clear()
                    pending.extend(self._feed(Failed(_cause(exc), during=action)))
                    continue
                if event is not None:
                    pending.extend(self._feed(event))
        finally:
            await self._stop(cancel_dump=True)
        conclude(self.role, self.outcome, self.failure, commit_error=self.commit_error,
                 confirm_error=self.confirm_error,
                 served_all=self.driver.lazy and self.driver.dump_ok is True)

    def _feed(self, event: Event) -> tuple[Action, ...]:
        actions = self.driver.handle(event)
        log.debug("driver: %s -> %s", event, actions)
        return actions

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc

    def _watch(self, wait: Awaitable[T], event_of: Callable[[T], Event]) -> None:
        """Read in a task; what it read (or how it failed) comes back as an event."""
        async def read() -> None:
            try:
                value = await wait
            except (FerrymanError, OSError) as exc:
                self._on_read_failure(exc)
                self.events.put_nowait(Failed(_cause(exc)))
                return
            except Exception as exc:
                self._broke(exc)
                raise
            self.events.put_nowait(event_of(value))

        task = asyncio.ensure_future(read())
        self.reads.add(task)
        task.add_done_callback(self.reads.discard)

    def _broke(self, exc: Exception) -> None:
        """A bug in a task: wake the loop, which raises it (never a silent hang)."""
        self.bug = exc
        self.events.put_nowait(Failed(_cause(exc)))

    def _on_read_failure(self, exc: BaseException) -> None:
        if self.role.tracker.phase == S.COMMITTED and not self.driver.lazy and \
                isinstance(exc, FerrymanError):
            self.confirm_error = exc  # cold: the destination did not confirm
        else:
            self._fail(exc)

    async def _stop(self, *, cancel_dump: bool) -> None:
        tasks = [*self.reads, *((self.dump,) if cancel_dump and self.dump else ())]
        for task in tasks:
            task.cancel()  # a dump cancelled kills criu: the tasks it held continue
        await asyncio.gather(*tasks, return_exceptions=True)
        self.reads.clear()

    # -- the final dump and CRIU's notifications ------------------------------------------

    async def _run_dump(self, act: RunDump) -> None:
        role = self.role
        creds = role.opts.creds
        kw: dict[str, Any] = {
            "on_notify": self._on_notify, "freeze_cgroup": role.find_freezer(),
            "tcp_established": role.opts.tcp_established, "track_mem": act.parent > 0,
            "network_lock": role.lock_network(),
            "parent": set_name(act.parent) if act.parent else None,
            "track_mem_uffd": role.write_tracker is not None}
        try:
            if (role.compressed and not act.lazy) or (act.lazy and role.lazy_relay):
                # criu -> socket pair -> the relay (compressing if role.compressed); a lazy
                # dump serves the destination's lazy-pages daemon through it
                framed = act.lazy and role.criu_frames
                await dump_through_relay(role, act.port, lambda fd: role.criu.dump(
                    role.pid, role.workdir, page_server_fd=fd, lazy=act.lazy,
                    relay_frames=framed, **kw), framed=framed)
            else:
                await role.dumper.dump(
                    role.pid, role.workdir,
                    page_server=PageServerAddress(
                        role.ch.local_ip if act.lazy and role.ch else role.opts.host,
                        role.ps_port if act.lazy else act.port),
                    tls=TlsFiles(cacert=creds.ca, cert=creds.cert, key=creds.key),
                    lazy=act.lazy, **kw)
        except Exception as exc:
            if not isinstance(exc, FerrymanError | OSError):
                self._broke(exc)
                raise
            if role.tracker.phase == S.COMMITTED and not act.lazy:
                log.warning("criu reported an error after the point of no return: %s", exc)
            else:
                self._fail(exc)
            self.events.put_nowait(DumpEnded(ok=False))
            return
        self.events.put_nowait(DumpEnded(ok=True))

    async def _on_notify(self, script: str, _pid: int) -> bool:
        answer = self.answer = asyncio.get_running_loop().create_future()
        self.events.put_nowait(Notified(script))
        return bool(await answer)  # a failure raised here is CRIU's answer (criu/swrk.py)

    def _answer(self, ok: bool) -> None:
        answer, self.answer = self.answer, None
        assert answer is not None, "answering a notification nobody asked"
        if ok:
            answer.set_result(True)
        else:
            answer.set_exception(self.failure or FerrymanError("the migration failed"))

    # -- one action ---------------------------------------------------------------------

    async def _do(self, action: Action) -> Event | None:
        role = self.role
        match action:
            case Enter(phase, quiet):
                self._enter(phase, quiet)
            case RunPresync():
                assert self.workload is not None
                await source_presync(role, self.workload, role.sync_port)
                return PresyncDone(role.report.sync.get("presync_ms"))
            case AskSet(index, final, lazy):
                ready = await precopy.next_set(role, wire.Iterate(index, final=final, lazy=lazy))
                return SetReady(ready.page_server_port, ready.restore_bytes_per_s or 0)
            case RunPreDump(index, port):
                return PreDumpDone(await precopy.pre_dump(role, index, port))
            case RecordPrediction(ms):
                role.report.iterations[-1]["predicted_downtime_ms"] = ms
            case RecordIterations(summary, pre_dumps, lazy):
                record_iterations(role.report, summary)
                role.opts.progress("ITERATING", f"{pre_dumps} pre-dumps; "
                                   f"{summary.convergence.partition(': ')[2]}"
                                   + ("; final step lazy" if lazy else ""))
            case RunDump():
                if action.lazy:
                    # A lazy dump that ends (every page went, or the destination's restore
                    # failed) leaves the tree stopped, and the controller may die before it
                    # hears of it: the guard knows the tree from the start, and continues it
                    # (or, after the commit, kills it) whatever the moment.
                    role.guard_left_stopped()
                if action.lazy and not role.lazy_relay:
                    assert role.ch is not None
                    role.ps_port = role.ps_port or free_port(role.ch.local_ip)  # the Plan named it
                    if role.pages_from:  # only the destination's lazy-pages daemon gets in
                        portguard.source_guard(role.workdir, role.ps_port, role.pages_from)
                self.dump = asyncio.ensure_future(self._run_dump(action))
            case FreezeWindow():
                role.freeze_window()
            case AnswerNotify(ok):
                self._answer(ok)
            case MoveAddressAway():
                role.move_address_away()
            case ShipImages():
                await role.ship_images()
            case FinalSync():
                assert self.workload is not None
                await source_final_sync(role, self.workload, role.sync_port)
            case KeepShared():
                role.keep_what_the_restore_shares()
            case SendRestore(lazy):
                assert role.ch is not None
                await role.ch.send(role.restore_message(role.ps_port if lazy else 0))
            case FindNetworkLock():
                role.find_network_lock()
            case AwaitRestored():
                self._watch(role.await_restored(), lambda msg: Restored(msg.pid))
            case CommitStep(step):
                return await self._commit_step(step)
            case ThawCgroup():
                role.thaw()  # empty now, or holding the restored tree on a shared host
            case CollectDumpStats(lazy):
                role.collect_dump_stats(lazy=lazy)
            case KillSurvivors():
                assert role.tree is not None
                if role.tree.alive():  # CRIU reported success but left the tree: never twice
                    role.tree.kill()
            case AwaitPagesComplete():
                assert role.ch is not None
                self._watch(role.ch.expect((wire.PagesComplete,), role.opts.timeouts.page_tail),
                            self._pages_complete)
            case AwaitDumpEnd(seconds):
                self._watch(asyncio.sleep(seconds), lambda _: DumpGraceOver())
            case StopDump():
                await self._stop(cancel_dump=True)
            case GuardLeftStopped():
                role.guard_left_stopped()
            case ContinueLeftStopped():
                continue_left_stopped(role)
            case RollBack(reason):
                await self._stop(cancel_dump=False)  # a read may wait: the roll-back reads
                self._fail(FerrymanError(reason or "the migration failed"))
                assert self.failure is not None
                return RolledBack(await role.roll_back(self.failure))
            case Abandon():
                assert self.failure is not None
                await precopy.abandon(role, self.failure)
            case KillTree():
                assert role.tree is not None
                # CRIU left the served copy stopped, or (runc) in the cgroup we froze, where
                # a SIGKILL waits for the thaw
                role.tree.kill(timeout=0)
                role.thaw()
                await asyncio.to_thread(role.tree.kill)
            case RecordPages():
                assert self.tail is not None
                record_pages(role.report, self.tail)
            case Finish(outcome):
                self.outcome = outcome
        return None

    def _enter(self, phase: SourcePhase, quiet: bool) -> None:
        role = self.role
        if quiet:
            role.tracker.advance(phase)
            return
        lazy, node = self.driver.lazy, role.report.destination_node
        streamed = self.driver.streamed
        detail = ""
        if phase == S.PLANNED:
            detail = (f"pre-copy into page servers on {node}" if self.driver.convergence
                      else "cold, streamed: the pages go straight into the restored tree, "
                      "held stopped until the last one is there" if streamed
                      else "post-copy: pages will follow on demand" if lazy
                      else f"page server on port {self.driver.port}")
        elif phase == S.PRESYNC:
            detail = f"rsync while running to {role.ch.peer_ip if role.ch else ''}"
        elif phase == S.FREEZING:
            role.freeze_at = time.monotonic()
            detail = f"dumping PID {role.pid}" + (
                " (its memory streams from here into the restored tree)" if streamed
                else " (memory stays here, served lazily)" if lazy else "")
        elif phase == S.AWAIT_RESTORE and streamed:
            detail = f"{node} restores the tree stopped and takes every page into it"
        elif phase == S.COMMITTED:
            detail = "destination resumes the workload" + ("" if lazy and not streamed else
                                                           "; the source copy goes")
        elif phase == S.SERVING_PAGES:
            detail = (f"running on {node} as PID {role.report.destination_pid}; "
                      "serving its memory")
        elif phase == S.DONE:
            detail = (f"running on {node} as PID {role.report.destination_pid}; its "
                      f"{self.tail.pages} pages went in before the resume, in "
                      f"{self.tail.elapsed_ms} ms" if self.tail is not None and streamed
                      else f"all {self.tail.pages} pages arrived in {self.tail.elapsed_ms} ms"
                      if self.tail is not None
                      else f"running on {node} as PID {role.report.destination_pid}")
        elif phase == S.RESUMING or (phase == S.LOST and role.tracker.phase != S.RESUMING):
            detail = str(self.failure)
        role.phase(phase, detail)

    async def _commit_step(self, step: Step) -> Event | None:
        role = self.role
        if step is Step.SEND_COMMIT_ANYWAY:
            try:
                await commit.carry_out(role, Step.SEND_COMMIT)
            except PeerLost as exc:
                # It may or may not have arrived; without it the destination keeps its
                # copy stopped (an orphan), so destroying ours is still the only safe choice.
                self.commit_error = exc
                return CommitSent(ok=False)
            return CommitSent(ok=True)
        if step in (Step.WATCH_COMMITTED, Step.AWAIT_COMMITTED):
            # cold: read at once, CRIU's clean-up is not downtime
            self._watch(role.await_committed(), lambda msg: Committed(msg.pid))
            return None
        await commit.carry_out(role, step)
        return None

    def _pages_complete(self, msg: wire.PagesComplete) -> Event:
        self.tail = msg
        return PagesComplete(msg.pages)

def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
