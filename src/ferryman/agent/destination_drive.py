"""The DESTINATION driver's actions, carried out: the shell around
migration/destination_driver.py.

:class:`DestinationDrive` feeds the driver one event at a time and does the actions it
answers, in order. Every wait is an action whose outcome is the next event (the session
reads one message at a time), and an action that raises becomes a ``Failed`` event naming
it; the driver says what follows. The decisions are the driver's; this module only knows
how (CRIU, runc, the channel, the outcome records), through agent/destination_restore.py,
destination_lazy.py, destination_pages.py and destination_end.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from pathlib import Path

from ferryman import wire
from ferryman.agent.destination_end import await_abort, cleanup, keep_orphan, send_failed
from ferryman.agent.destination_lazy import (
    SourceAborted,
    kill_tail,
    send_pages_complete,
    start_lazy_early,
    wait_for_pages,
)
from ferryman.agent.destination_pages import answer_iterate
from ferryman.agent.destination_restore import (
    failure_details,
    hold,
    restore,
    resume,
    send_restored,
    take_while_fetching,
)
from ferryman.agent.destination_role import DestinationRole
from ferryman.agent.files import Receiver
from ferryman.agent.imageseal import sha256_sums
from ferryman.agent.orphans import write_outcome
from ferryman.errors import (
    CriuError,
    FerrymanError,
    FileLockBusy,
    PeerLost,
    Refusal,
    RemoteError,
    RuncError,
    TransferError,
)
from ferryman.host import netinfo
from ferryman.migration.destination_driver import (
    AbortAsked,
    Act,
    Action,
    CleanUp,
    CommitAsked,
    DestinationDriver,
    Do,
    Enter,
    Event,
    Failed,
    FileReceived,
    Finish,
    IterateAsked,
    PagesFetched,
    RestoreAsked,
    RestoreDone,
    RestoreFailed,
    SendFailed,
    SourceLost,
    TransferFailed,
)

__all__ = ["DestinationDrive"]

log = logging.getLogger(__name__)


class DestinationDrive:
    def __init__(self, s: DestinationRole, driver: DestinationDriver, *, port: int = 0,
                 refusal: Refusal | None = None) -> None:
        self.s = s
        self.driver = driver
        self.port = port  # the first page server's, for Ready
        self.refusal = refusal
        self.receiver: Receiver | None = None
        self.iterate: wire.Iterate | None = None
        self.restore_msg: wire.Restore | None = None
        self.failure: BaseException | None = None  # what the Failed or the log says
        self.failed_at: tuple[str, str, str | None] = ("", "", None)  # message, tail, log
        self.kept: dict[Path, Path] = {}
        self.keep_stopped: asyncio.Future[frozenset[int]] | None = None
        self.resumed_at = 0.0
        self.restored_at = 0.0  # streamed: the restore's end, when the fetch began
        self.fetched_ms: int | None = None  # streamed: how long the fetch took
        self.restored_pid = 0

    async def run(self, first: Event) -> None:
        pending: deque[Action] = deque(self._feed(first))
        try:
            while pending:
                action = pending.popleft()
                try:
                    event = await self._do(action)
                except (FerrymanError, OSError) as exc:
                    log.warning("migration failed in %s: %s", self.s.tracker.phase, exc)
                    self.failure = exc
                    pending.clear()
                    pending.extend(self._feed(Failed(type(exc).__name__, during=action)))
                    continue
                if event is not None:
                    pending.extend(self._feed(event))
        finally:
            self._close_receiver()
            if self.keep_stopped is not None:
                self.keep_stopped.cancel()

    def _feed(self, event: Event) -> tuple[Action, ...]:
        actions = self.driver.handle(event)
        log.debug("driver: %s -> %s", event, actions)
        return actions

    def _close_receiver(self) -> None:
        if self.receiver is not None:  # a file being written keeps its fd otherwise
            self.receiver.close()
            self.receiver = None

    async def _do(self, action: Action) -> Event | None:
        s = self.s
        match action:
            case Enter(phase):
                s.tracker.advance(phase)
            case CleanUp(keep_logs):
                self._close_receiver()
                self.kept = await cleanup(s, keep_logs=keep_logs)
            case SendFailed(code):
                message, tail, log_path = self.failed_at
                await send_failed(s, code, message, tail, kept=self.kept, log_path=log_path)
            case Finish():
                pass
            case Do(Act.SEND_READY):
                await s.ch.send(wire.Ready(page_server_port=self.port, sync_port=s.sync_port,
                                           pages_from=netinfo.route_source(s.ch.peer_ip),
                                           prefault_bytes=s.prefaulted[0],
                                           prefault_ms=s.prefaulted[1]))
            case Do(Act.SEND_REFUSED):
                assert self.refusal is not None
                await s.ch.send(wire.Refused(code=self.refusal.code, message=str(self.refusal)))
            case Do(Act.READ_NEXT):
                return await self._read_next()
            case Do(Act.ANSWER_ITERATE):
                assert self.iterate is not None
                await answer_iterate(s, self.iterate)
            case Do(Act.START_LAZY_EARLY):
                start_lazy_early(s)
            case Do(Act.RESTORE):
                assert self.restore_msg is not None
                try:
                    pid = await restore(s, self.restore_msg)
                except TransferError as exc:  # an image damaged on this disk since arrival
                    self.failed_at = (str(exc), "", None)
                    log.warning("migration failed here (%s): %s", exc.code, exc)
                    return RestoreFailed(exc.code)
                except (CriuError, RuncError, OSError, FileLockBusy) as exc:
                    self.failed_at = failure_details(exc)
                    log.warning("migration failed here (restore): %s", self.failed_at[0])
                    return RestoreFailed()
                self.restored_pid = pid
                if self.driver.streamed:  # its pages come now
                    take_while_fetching(s, pid)
                    self.restored_at = time.monotonic()
                return RestoreDone(pid)
            case Do(Act.HOLD):
                self.keep_stopped = hold(s, self.restored_pid)
            case Do(Act.SEND_RESTORED):
                await send_restored(s)
            case Do(Act.AWAIT_DECISION):
                return await self._await_decision()
            case Do(Act.RESUME):
                assert self.keep_stopped is not None
                await resume(s, self.keep_stopped)
            case Do(Act.SEND_COMMITTED):
                assert s.tree is not None
                self.resumed_at = time.monotonic()
                await s.ch.send(wire.Committed(pid=s.tree.pid))
            case Do(Act.FETCH_PAGES):
                assert s.lazy_pages is not None
                try:
                    await wait_for_pages(s, s.lazy_pages)
                except SourceAborted:  # a streamed restore's source gave up meanwhile
                    return AbortAsked()
                if self.driver.streamed:
                    self.fetched_ms = round((time.monotonic() - self.restored_at) * 1000)
                    log.info("migration %s: every page is in the stopped tree, %d ms after "
                             "its restore", s.workdir.name if s.workdir else "?",
                             self.fetched_ms)
                return PagesFetched()
            case Do(Act.SEND_PAGES_COMPLETE):
                assert s.lazy_pages is not None
                await send_pages_complete(s, s.lazy_pages, self.resumed_at,
                                          elapsed_ms=self.fetched_ms)
            case Do(Act.KILL_TAIL):
                assert s.lazy_pages is not None
                await kill_tail(s, s.lazy_pages, self.failure or PeerLost(s.ch.peer, "lost"))
            case Do(Act.SEND_ABORTED):
                await s.ch.send(wire.Aborted())
            case Do(Act.AWAIT_ABORT):
                await await_abort(s)
            case Do(Act.KEEP_ORPHAN):
                keep_orphan(s, self.failure or PeerLost(s.ch.peer, "lost"))
            case Do(Act.RECORD_DONE):
                assert s.workdir is not None
                assert s.tree is not None
                log.info("migration %s committed: PID %d runs here", s.workdir.name,
                         s.tree.pid)
                write_outcome(s.cfg.state_dir, s.workdir.name, f"DONE {s.tree.pid}\n")
            case Do(Act.HANG_UP):
                s.ch.hang_up()
        return None

    async def _read_next(self) -> Event:
        """One message while RECEIVING: an image file's part, Iterate, Restore or Abort."""
        s, t = self.s, self.s.cfg.timeouts
        assert s.workdir is not None
        if self.receiver is None:
            self.receiver = Receiver(s.workdir)
        msg = await s.ch.expect((wire.FileChunk, wire.FileEnd, wire.Restore, wire.Abort,
                                 wire.Iterate), t.iteration if s.sets else t.transfer)
        try:
            match msg:
                case wire.Iterate():
                    self.iterate = msg
                    return IterateAsked(msg.index, msg.final, msg.lazy)
                case wire.FileChunk() | wire.FileEnd():
                    self.receiver.take(msg)
                    return FileReceived(msg.name if isinstance(msg, wire.FileEnd) else "")
                case wire.Abort():
                    log.warning("source aborted the migration: %s", msg.reason)
                    return AbortAsked()
            self.receiver.check_complete(msg.file_count)
            if s.seal is not None:  # re-checked at the restore (agent/imageseal.py)
                s.seal.add(s.workdir, sha256_sums(self.receiver.sums()))
        except TransferError as exc:
            # the source may still be sending: it learns why all the same
            self.failed_at = (str(exc), "", None)
            log.warning("migration failed here (%s): %s", exc.code, exc)
            return TransferFailed(exc.code)
        self._close_receiver()
        self.restore_msg = msg
        return RestoreAsked()

    async def _await_decision(self) -> Event:
        s = self.s
        try:
            decision = await s.ch.expect((wire.Commit, wire.Abort), s.cfg.timeouts.commit)
        except (PeerLost, RemoteError) as exc:
            self.failure = exc
            if s.ch.conn.lazy and not self.driver.streamed and s.tree is not None:
                log.error("source lost after a post-copy restore, before commit: PID %d "  # noqa: TRY400
                          "cannot run without the source's pages; killed (%s)",
                          s.tree.pid, exc)
            return SourceLost()
        if isinstance(decision, wire.Abort):
            log.warning("source aborted the migration: %s", decision.reason)
            return AbortAsked()
        return CommitAsked()
