"""``ferryman migrate`` and ``ferryman check`` through the agent's launcher, when it runs.

When ``STATE_DIR/launcher.sock`` (the command's ``--state-dir``, default the agent's) answers,
the command is run by a process the launcher forks, already warm (cli/launcher.py): this
process hands over its argv, working directory, environment, umask and standard streams,
forwards the signals it gets, and exits with the code it gets back. Without a launcher, or
when it refuses (another user, another namespace) or does not answer, :func:`via_launcher`
returns None and the command runs here as always. ``FERRYMAN_NO_LAUNCHER=1`` skips it.

This module is imported before anything else of the command: it must stay cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from ferryman.paths import DEFAULT_STATE_DIR, LAUNCHER_SOCKET

__all__ = ["COMMANDS", "launched", "state_dir_of", "via_launcher"]

COMMANDS = ("migrate", "check")
SKIP_ENV = "FERRYMAN_NO_LAUNCHER"
LENGTH = struct.Struct("!I")
CODE = struct.Struct("!i")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
DIED = 1  # the launched process ended without a code (killed): as a crash here would
ANSWER_TIMEOUT_S = 10.0  # for the launched process's PID; then the command runs here
GO = b"G"  # the launched process may run the command (cli/launcher.py waits for it)

# Set in a process the launcher forked (cli/launcher.py): the report says so.
launched: list[bool] = []


def state_dir_of(argv: Sequence[str]) -> Path:
    """The ``--state-dir`` ``argv`` gives (the last one), else the default."""
    found = DEFAULT_STATE_DIR
    for i, word in enumerate(argv):
        if word == "--state-dir" and i + 1 < len(argv):
            found = Path(argv[i + 1])
        elif word.startswith("--state-dir="):
            found = Path(word.partition("=")[2])
    return found


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def via_launcher(argv: Sequence[str]) -> int | None:
    """The exit code of ``argv`` run by the agent's launcher, or None (run it here)."""
    if _command(argv) not in COMMANDS or os.environ.get(SKIP_ENV):
        return None
    path = state_dir_of(argv).absolute() / LAUNCHER_SOCKET
    try:
        if not path.is_socket():
            return None
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(str(path))
    except OSError:
        return None  # none runs (a stale socket), or not ours to use
    with conn:
        umask = os.umask(0)
        os.umask(umask)
        body = json.dumps({"argv": list(argv), "cwd": str(Path.cwd()), "env": dict(os.environ),
                           "umask": umask}).encode()
        try:
            conn.settimeout(ANSWER_TIMEOUT_S)  # a launcher that hangs is no launcher
            reader = conn.makefile("rb")
            # our streams go only to a launcher that has taken us: sent into a connection it
            # never accepts, they would stay open there (and whoever reads our output wait)
            hello = json.loads(reader.readline() or b"{}")
            if not (isinstance(hello, dict) and hello.get("ready") is True):
                return None  # refused: another user, namespace or root directory
            socket.send_fds(conn, [LENGTH.pack(len(body)) + body], [0, 1, 2])
            answer = json.loads(reader.readline() or b"{}")
            pid = answer.get("pid") if isinstance(answer, dict) else None
            if not isinstance(pid, int) or pid <= 0:
                return None  # refused: another user, namespace or root directory
            # Only now does the child run the command: one that does not get this (we timed
            # out, or died) ends without running it, so it never runs twice.
            conn.sendall(GO)
            conn.settimeout(None)
        except (OSError, ValueError):
            return None  # refused or unanswered before anything ran, or a stream is closed
        for sig in FORWARDED:
            signal.signal(sig, _forwarder(pid))
        code = reader.read(CODE.size)
    if len(code) != CODE.size:
        print(f"ferryman: error: the agent's launcher ran this command as PID {pid}, which "
              "ended without an exit code (killed?); see 'ferryman orphans' and the agent's "
              "log on both nodes", file=sys.stderr)
        return DIED
    (value,) = CODE.unpack(code)
    return int(value)


def _forwarder(pid: int) -> Callable[[int, FrameType | None], None]:
    def forward(sig: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return forward
