"""The fuzzer's invariants can fail: each one, broken on purpose, is reported.

A real process stands in for the agent (a Python that sleeps, then opens what it is told);
the watch must see a file in the marker tree, a file named with the token, a leftover
migration directory, a child process, an fd over the baseline, a traceback in the log and
the process's death.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.watch import AgentWatch, children

# Reads a line per action from stdin: "open PATH" keeps PATH open, "child" starts a sleeper.
STAND_IN = """
import subprocess, sys
held = []
for line in sys.stdin:
    what, _, arg = line.strip().partition(" ")
    if what == "open":
        held.append(open(arg, "rb"))
    elif what == "child":
        held.append(subprocess.Popen(["sleep", "60"]))
    print("ok", flush=True)
"""


class StandIn:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", STAND_IN], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def do(self, line: str) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    s = StandIn()
    try:
        yield s
    finally:
        kids = children(s.proc.pid) if s.proc.poll() is None else []
        s.proc.kill()
        s.proc.wait()
        for kid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(kid.split()[0]), signal.SIGKILL)


@pytest.fixture
def watch(tmp_path: Path, stand_in: StandIn) -> AgentWatch:
    state = tmp_path / "state"
    (state / "migrations").mkdir(parents=True)
    marker = tmp_path / "fzmarkTOKEN"
    (marker / "x").mkdir(parents=True)
    log = tmp_path / "agent.log"
    log.write_text("started\n")
    w = AgentWatch(stand_in.proc, state, log, marker, "fzmarkTOKEN",  # type: ignore[arg-type]
                   (tmp_path, state), owned=(tmp_path,))
    stand_in.do("open /dev/null")  # whatever a fresh interpreter opens late, before the baseline
    w.baseline()
    return w


def test_nothing_changed_is_no_problem(watch: AgentWatch) -> None:
    assert watch.settle(0.1) == []


@pytest.mark.parametrize(("break_it", "expected"), [
    (lambda w, s: (w.marker / "x" / "new").write_text("?"), "the marker tree changed"),
    (lambda w, s: (w.state_dir / "fzmarkTOKEN.img").write_text("?"), "named by the fuzzer"),
    (lambda w, s: (w.state_dir.parent / "other").write_text("?"), "new files in"),
    (lambda w, s: (w.state_dir / "migrations" / "m-1").mkdir(), "left in"),
    (lambda w, s: s.do("child"), "child processes left"),
    (lambda w, s: s.do(f"open {w.log_path}"), "fds open"),
    (lambda w, s: w.log_path.open("a").write("Traceback (most recent call last):\n"),
     "traceback"),
    (lambda w, s: (s.proc.kill(), s.proc.wait()), "the agent exited"),
])
def test_each_broken_invariant_is_reported(watch: AgentWatch, stand_in: StandIn,
                                           break_it: object, expected: str) -> None:
    break_it(watch, stand_in)  # type: ignore[operator]
    problems = watch.settle(0.2)
    assert any(expected in p for p in problems), problems
