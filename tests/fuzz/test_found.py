"""What the protocol fuzzer found, replayed as fixed sequences: each held once, must not again.

Same agent, TLS peer and invariants as the fuzzer (tests/fuzz/), one sequence per case.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ferryman import wire
from tests.fuzz.conftest import FuzzTarget
from tests.fuzz.frames import Frame
from tests.fuzz.runner import PROBE_ANSWERS, probe_script
from tests.fuzz.script import Await, Close, Pause, Script, Send, Step
from tests.fuzz.sequences import hello_message

pytestmark = pytest.mark.integration
GRACE_S = 5.0  # far below the agent's 120 s page-server timeout


def plan(mode: str) -> wire.Plan:
    return wire.Plan(migration_id=f"found-{mode}", mode=mode, pid=4242, lazy=False)


def steps(*messages: wire.Message) -> list[Step]:
    """Each message, then a wait for the answer (whether one comes or not)."""
    out: list[Step] = []
    for m in messages:
        out += [Send(Frame.of(m).to_bytes(), type(m).__name__), Await()]
    return out


def then(*messages: wire.Message) -> list[Step]:
    """Each message, sent without waiting for any answer."""
    return [Send(Frame.of(m).to_bytes(), type(m).__name__) for m in messages]


CASES: dict[str, tuple[Callable[[bytes], list[Step]], bool]] = {
    # The source went away while the destination waited for a page server's exit: the
    # migration (its directory, a root criu page-server) stayed for page_server_exit (120 s).
    "iterate-then-reset": (lambda cpu: steps(hello_message(cpu), plan("precopy"),
                                             wire.Iterate(2, final=True)), True),
    "restore-then-reset": (lambda cpu: steps(hello_message(cpu), plan("cold"),
                                             wire.Restore(file_count=0, total_bytes=0)), True),
    # The peer reset the connection while the destination prepared the Plan: the page-server
    # guard asked the closed transport for the peer's address (TypeError, a traceback).
    "plan-then-reset": (lambda cpu: [*steps(hello_message(cpu)), *then(plan("cold")),
                                      Pause(0.01)], True),
    # A Plan refused after its directory was made (a bad target), the peer gone before the
    # Refused: sending it failed, and the directory stayed (cleanup came after the send).
    **{f"refused-plan-then-reset-{ms}ms": (
        lambda cpu, ms=ms: [*steps(hello_message(cpu)), *then(wire.Plan(
            migration_id="found-refused", mode="cold", pid=4242, lazy=False, target="{")),
            Pause(ms / 1000)], True) for ms in (2, 5, 10)},
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(CASES))
def test_found_sequence_leaves_nothing(fuzz_target: FuzzTarget, case: str) -> None:
    watch = fuzz_target.start()
    cpu = fuzz_target.cpuinfo()
    player = fuzz_target.player()
    watch.baseline()
    make, reset = CASES[case]
    played = asyncio.run(player.play(Script((*make(cpu), Close(abort=reset)))))
    assert played.answers[:1] == ["Hello"], played.describe()
    assert watch.settle(GRACE_S) == []
    assert asyncio.run(player.play(probe_script())).answers == PROBE_ANSWERS
