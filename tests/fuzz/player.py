"""Plays fuzz sequences against a real agent: asyncio TLS sessions from a node's namespace.

Each :class:`~tests.fuzz.script.Script` gets its own connection with a cluster certificate.
A reader task takes in whatever the agent answers (so its writes never block) and notes it;
``Await`` steps wait for the next answer or the agent's close. Nothing here judges the agent:
that is :mod:`tests.fuzz.watch`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from ferryman import wire
from ferryman.errors import FerrymanError
from tests.fuzz.script import Await, Close, Pause, Script, Send
from tests.support.peer import client_context, netns_socket

AWAIT_S = 3.0  # an answer the agent owes comes within this (a Plan runs CRIU once)
SCRIPT_S = 30.0  # a whole sequence, however it goes


@dataclass
class Played:
    """What happened to one sequence: the agent's answers, in order."""

    answers: list[str] = field(default_factory=list)
    closed_by_agent: bool = False
    problem: str | None = None  # the fuzzer's own trouble (connect, stuck), not the agent's
    seconds: float = 0.0

    def describe(self) -> str:
        end = "agent closed" if self.closed_by_agent else "we closed"
        return f"answers {self.answers or '[]'} ({end}, {self.seconds:.2f} s)"


class _Answers:
    """Reads the agent's frames until it closes; counts them for ``Await``."""

    def __init__(self, reader: asyncio.StreamReader, played: Played) -> None:
        self.reader = reader
        self.played = played
        self.decoder = wire.FrameDecoder()
        self.changed = asyncio.Event()
        self.waited = 0  # answers an Await has waited for
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            while data := await self.reader.read(1 << 16):
                self.decoder.receive_data(data)
                while (msg := self.decoder.maybe_message()) is not None:
                    self.played.answers.append(_name(msg))
                    self.changed.set()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        except FerrymanError as exc:  # the agent's own framing broke: note it, read no more
            self.played.answers.append(f"BAD FRAME: {exc}")
        self.played.closed_by_agent = True
        self.changed.set()

    async def wait(self, timeout: float) -> None:
        """Until the agent's next answer not waited for yet, or its close; at most ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.played.answers) <= self.waited and not self.played.closed_by_agent:
            self.changed.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        self.waited = min(len(self.played.answers), self.waited + 1)

    async def wait_closed(self, timeout: float) -> None:
        """Until the agent closes, at most ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.task), timeout)


def _name(msg: wire.Message) -> str:
    if isinstance(msg, wire.Error | wire.Refused | wire.Failed):
        return f"{type(msg).__name__}({msg.code})"
    return type(msg).__name__


class Player:
    """Connects to the agent at ``host:port`` from inside network namespace ``netns``."""

    def __init__(self, netns: str, host: str, port: int, pki: Path,
                 certs: tuple[str, ...] = ("a", "c")) -> None:
        self.netns = netns
        self.host = host
        self.port = port
        self.contexts = {name: client_context(pki, name) for name in certs}

    async def play(self, script: Script) -> Played:
        played = Played()
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._play(script, played), SCRIPT_S)
        except TimeoutError:
            played.problem = f"still running after {SCRIPT_S:.0f} s"
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            played.problem = f"connection failed: {exc!r}"
        played.seconds = time.monotonic() - started
        return played

    async def _play(self, script: Script, played: Played) -> None:
        sock = netns_socket(self.netns)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=self.contexts[script.cert], server_hostname=self.host,
                ssl_handshake_timeout=10)
        except BaseException:
            sock.close()
            raise
        answers = _Answers(reader, played)
        try:
            for step in script.steps:
                if isinstance(step, Send):
                    if step.data and not played.closed_by_agent:
                        writer.write(step.data)
                        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                            await writer.drain()
                elif isinstance(step, Await):
                    await answers.wait(AWAIT_S)
                elif isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Close):
                    if not step.abort and script.linger:
                        await answers.wait_closed(script.linger)
                    break
            _close(writer, abort=isinstance(script.steps[-1], Close) and script.steps[-1].abort)
            await asyncio.wait_for(answers.task, 5)
        finally:
            answers.task.cancel()
            writer.transport.abort()


def _close(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    if abort:  # a TCP reset: SO_LINGER 0, then close
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                                b"\x00\x00\x00\x00")
        writer.transport.abort()
    else:
        writer.close()
