"""The point of no return replayed without I/O: the SOURCE driver's commit walk carried out
by agent/commit.py on a recording SourceRole, cold and lazy.

What the executor does with migration/commit.py's table, call by call, on the happy path and
on each way the point of no return can fail before or at the send of Commit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest

from ferryman import wire
from ferryman.agent.commit import carry_out
from ferryman.errors import FerrymanError, PeerLost
from ferryman.migration.commit import Step
from ferryman.migration.phases import SourcePhase as S
from ferryman.migration.source_driver import SourceDriver
from ferryman.migration.source_events import (
    Action,
    AnswerNotify,
    AwaitPagesComplete,
    CommitSent,
    CommitStep,
    Committed,
    Enter,
    Failed,
    Notified,
    Restored,
    RollBack,
    Started,
)

DEST_PID = 4242


@dataclass
class Channel:
    """The control channel as the executor uses it: Commit out, Committed in."""

    calls: list[str]
    send_fails: bool = False
    peer: str = "10.0.0.2:7070"

    async def send(self, msg: wire.Message) -> None:
        self.calls.append(f"send {type(msg).__name__}")
        if self.send_fails:
            raise PeerLost(self.peer, "connection reset")

    async def expect(self, types: tuple[type, ...], timeout: float) -> wire.Message:
        self.calls.append("expect Committed")
        return wire.Committed(DEST_PID)


@dataclass
class Report:
    destination_node: str = "b"
    destination_pid: int | None = None


@dataclass
class Role:
    """Records what the executor asks of the SOURCE role, in order."""

    lazy: bool
    holds: bool = True
    send_fails: bool = False
    calls: list[str] = field(default_factory=list)
    commit_error: PeerLost | None = None
    actions: list[tuple[Action, ...]] = field(default_factory=list)  # the driver's others
    report: Report = field(default_factory=Report)
    ch: Any = None

    def __post_init__(self) -> None:
        self.ch = Channel(self.calls, self.send_fails)

    def queue_stop_source(self) -> None:
        self.calls.append("queue SIGSTOP")

    def criu_holds_tree(self) -> bool:
        self.calls.append("criu holds tree?")
        return self.holds

    async def release_network_lock(self) -> None:
        self.calls.append("release lock")

    def phase(self, phase: S, detail: str = "") -> None:
        self.calls.append(f"phase {phase.name}")

    def mark_commit(self) -> None:
        self.calls.append("mark commit")

    async def await_committed(self) -> wire.Committed:
        msg = await self.ch.expect((wire.Committed,), 1.0)
        assert isinstance(msg, wire.Committed)
        return msg

    def forward_inflight(self) -> None:
        self.calls.append("forward segments")


def run(role: Role) -> Role:
    """The point of no return as agent/source_drive.py carries it out: the driver's actions
    from Restored on, each CommitStep done by agent/commit.py on the recording role, the
    reads of Committed when the batch is done (they are tasks), a raise ending it all."""
    driver = SourceDriver(lazy=role.lazy)
    notify = (Notified("pre-dump"), Notified("post-dump"))
    lazy = (*notify, Notified("status-ready"))
    for event in (Started(0 if role.lazy else 7001), *(lazy if role.lazy else notify)):
        driver.handle(event)

    async def go() -> None:
        pending = deque(driver.handle(Restored(DEST_PID)))
        reads = 0
        while pending or reads:
            if not pending:
                reads -= 1
                msg = await role.await_committed()
                role.report.destination_pid = msg.pid
                pending.extend(driver.handle(Committed(msg.pid)))
                continue
            act = pending.popleft()
            match act:
                case Enter(phase):
                    role.phase(phase)
                case CommitStep(Step.WATCH_COMMITTED | Step.AWAIT_COMMITTED):
                    reads += 1
                case CommitStep(Step.SEND_COMMIT_ANYWAY):
                    try:
                        await carry_out(role, Step.SEND_COMMIT)  # type: ignore[arg-type]
                    except PeerLost as exc:
                        role.commit_error = exc
                    pending.extend(driver.handle(CommitSent(role.commit_error is None)))
                case CommitStep(step):
                    try:
                        await carry_out(role, step)  # type: ignore[arg-type]
                    except FerrymanError:
                        role.actions.append(driver.handle(Failed("boom", during=act)))
                        raise
                case _:
                    role.actions.append((act,))  # the rest of the migration: not commit steps

    asyncio.run(go())
    return role


def test_cold_happy_path() -> None:
    role = run(Role(lazy=False))
    assert role.calls == ["queue SIGSTOP", "criu holds tree?", "release lock", "phase COMMITTED",
                          "mark commit", "send Commit", "forward segments", "expect Committed"]
    assert role.commit_error is None
    assert role.report.destination_pid == DEST_PID
    assert role.actions == [(AnswerNotify(ok=True),)]  # then CRIU destroys the source copy


def test_lazy_happy_path() -> None:
    role = run(Role(lazy=True))
    assert role.calls == ["queue SIGSTOP", "release lock", "mark commit", "send Commit",
                          "forward segments", "phase COMMITTED", "expect Committed",
                          "phase SERVING_PAGES"]
    assert role.report.destination_pid == DEST_PID
    assert role.actions == [(AwaitPagesComplete(),)]  # awaited in line, then the page tail


def test_cold_criu_died_is_caught_before_anything_commits() -> None:
    role = Role(lazy=False, holds=False)
    with pytest.raises(FerrymanError, match="ran on after its dump"):
        run(role)
    assert role.calls == ["queue SIGSTOP", "criu holds tree?"]  # no lock released, no Commit
    assert role.actions == [(AnswerNotify(ok=False),)]  # CRIU resumes the tree: roll back


def test_cold_commit_send_failure_commits_anyway_and_remembers() -> None:
    role = run(Role(lazy=False, send_fails=True))
    assert role.calls == ["queue SIGSTOP", "criu holds tree?", "release lock", "phase COMMITTED",
                          "mark commit", "send Commit", "forward segments"]
    assert isinstance(role.commit_error, PeerLost)
    assert "expect Committed" not in role.calls  # nothing to read: the outcome is PeerLost
    assert role.actions == [(AnswerNotify(ok=True),)]  # the source copy goes all the same


def test_lazy_commit_send_failure_stops_before_committed() -> None:
    """The driver is still before COMMITTED, so it rolls back."""
    role = Role(lazy=True, send_fails=True)
    with pytest.raises(PeerLost):
        run(role)
    assert role.calls == ["queue SIGSTOP", "release lock", "mark commit", "send Commit"]
    assert "phase COMMITTED" not in role.calls
    assert RollBack() in role.actions[-1]
