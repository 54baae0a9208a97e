"""Runs fuzz sequences, many at once, and checks the agent after each batch of them.

A batch of sequences goes through ``concurrency`` connections at a time; once all are done,
the agent must settle into its invariants (tests/fuzz/watch.py) and answer a fresh session.
A batch that breaks one is played again in smaller groups, then one sequence at a time, the
agent checked after each, to name the sequence(s) that do it (a finding that needs the
company of others names its group). After a finding the agent is started afresh, so that
one finding does not hide the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ferryman import wire
from tests.fuzz.frames import Frame
from tests.fuzz.player import Played, Player
from tests.fuzz.script import Await, Close, Script, Send
from tests.fuzz.sequences import hello_message
from tests.fuzz.watch import AgentWatch, children

PROBE_ANSWERS = ["Hello", "Aborted"]
GROUP = 12  # a bad batch is played again in groups of this many


class TimeBoxEnded(Exception):
    """The fuzzer's time is up: ends hypothesis's loop of examples."""


@dataclass
class Finding:
    """Problems the agent showed after ``scripts`` (one, when it was found alone)."""

    problems: list[str]
    scripts: list[Script]
    played: list[Played]

    def describe(self) -> str:
        lines = [*self.problems, f"after {len(self.scripts)} sequence(s):"]
        for script, played in list(zip(self.scripts, self.played, strict=True))[:8]:
            lines.append(f"  {script.describe()}\n    -> {played.describe()}")
            if len(self.scripts) == 1:
                lines += [f"    sent {s.data[:300]!r}" for s in script.steps if isinstance(s, Send)]
        return "\n".join(lines)


@dataclass
class Runner:
    """Plays batches of ``batch`` sequences with ``player``; ``restart`` starts the agent
    afresh (after a finding) and returns its new watch."""

    player: Player
    watch: AgentWatch
    restart: Callable[[], AgentWatch]
    probe: Script
    batch: int = 96
    concurrency: int = 12  # below the agent's 16 TLS handshakes at once
    deadline: float = float("inf")  # time.monotonic() after which no sequence starts
    pending: list[Script] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    played: int = 0
    batches: int = 0
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    @property
    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def add(self, script: Script) -> None:
        """Play ``script`` with the next batch; TimeBoxEnded once the deadline has passed."""
        if self.out_of_time:
            self.flush()
            raise TimeBoxEnded
        self.pending.append(script)
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        scripts, self.pending = self.pending, []
        if not scripts:
            return
        played = self._play(scripts)
        self.played += len(scripts)
        self.batches += 1
        if problems := self.check():
            self._isolate(scripts, played, problems)

    def check(self) -> list[str]:
        """The invariants, once the agent has settled: [] when all hold."""
        problems = self.watch.settle()
        if self.watch.proc.poll() is None:
            answer = self._play([self.probe])[0]
            if answer.answers != PROBE_ANSWERS:
                problems.append(f"a fresh valid session got {answer.describe()} "
                                f"{answer.problem or ''}")
        return problems

    def _play(self, scripts: list[Script]) -> list[Played]:
        slots = asyncio.Semaphore(self.concurrency)

        async def one(script: Script) -> Played:
            async with slots:
                return await self.player.play(script)

        async def all_of() -> list[Played]:
            return list(await asyncio.gather(*(one(s) for s in scripts)))
        return self.loop.run_until_complete(all_of())

    def _isolate(self, scripts: list[Script], played: list[Played], problems: list[str]
                 ) -> None:
        """Name what broke the agent: groups of GROUP, then each sequence of a bad group."""
        self._fresh_agent()
        size = GROUP if len(scripts) > GROUP else 1
        named = False
        for at in range(0, len(scripts), size):
            part = scripts[at:at + size]
            part_played = self._play(part)
            if not (part_problems := self.check()):
                continue
            named = True
            if size > 1:
                self._isolate(part, part_played, part_problems)
            else:
                self.findings.append(Finding(part_problems, part, part_played))
                self._fresh_agent()
        if not named:  # only together with the others
            self.findings.append(Finding(problems, scripts, played))

    def _fresh_agent(self) -> None:
        """Stop the agent and what it left running; start it again and take a new baseline."""
        proc = self.watch.proc
        kids = [int(k.split()[0]) for k in children(proc.pid)] if proc.poll() is None else []
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for kid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)
        self.watch = self.restart()
        self.watch.baseline()

    def close(self) -> None:
        self.loop.close()


def probe_script() -> Script:
    """A well-behaved session: Hello, then Abort before any Plan."""
    hello = Frame.of(hello_message(b"")).to_bytes()
    abort = Frame.of(wire.Abort("probe")).to_bytes()
    return Script((Send(hello, "Hello"), Await(), Send(abort, "Abort"), Await(), Close()),
                  linger=2.0)
