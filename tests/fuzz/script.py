"""A fuzz sequence as steps: bytes to send, waits for the agent's answer, the close."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AWAITED = frozenset({"Hello", "Plan", "Iterate", "CheckRequest", "LinkTest", "Restore", "Abort"})
"""Messages a destination answers: a valid sequence waits for the answer before going on."""


@dataclass(frozen=True)
class Send:
    """Bytes to write (one frame, mutated or not, or none at all); ``label`` says what."""

    data: bytes = field(repr=False)
    label: str


@dataclass(frozen=True)
class Await:
    """Wait for the agent's next message (or its close), for a little while."""


@dataclass(frozen=True)
class Pause:
    """Let ``seconds`` pass: the agent gets on with what it has read."""

    seconds: float


@dataclass(frozen=True)
class Close:
    """End the connection: a TLS close, or a TCP reset (``abort``)."""

    abort: bool = False


Step = Send | Await | Pause | Close


@dataclass(frozen=True)
class Script:
    """One sequence: its steps, the client certificate it uses, and how long it waits for the
    agent to close before closing itself (after its last step)."""

    steps: tuple[Step, ...]
    cert: str = "a"
    linger: float = 0.0

    def __repr__(self) -> str:  # hypothesis prints examples: their bytes would be MiB
        return f"Script<{self.describe()}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's printer
        printer.text(repr(self))

    def describe(self) -> str:
        words = [f"[cert {self.cert}]"]
        for step in self.steps:
            if isinstance(step, Send):
                words.append(step.label)
            elif isinstance(step, Await):
                words.append("...")
            elif isinstance(step, Pause):
                words.append(f"({step.seconds:g} s)")
            else:
                words.append("RESET" if step.abort else "CLOSE")
        return " ".join(words)
