"""``ferryman migrate`` and ``ferryman check`` through the agent's launcher, when it runs.

When ``STATE_DIR/launcher.sock`` (the command's ``--state-dir``, default the agent's) answers,
the command is run by a process the launcher forks, already warm (cli/launcher.py): this
process hands over its argv, working directory, environment, umask and standard streams,
forwards the signals it gets, and exits with the code it gets back. Without a launcher, or
when it refuses (another user, another namespace) or does not answer, :func:`via_launcher`
returns None and the command runs here as always. ``FERRYMAN_NO_LAUNCHER=1`` skips it.

This module is the command's entry point (:func:`entry`) and is imported before anything
else of the command: it must stay cheap. It imports only what the interpreter has loaded at
start anyway, plus the C modules under ``socket``, ``signal`` and ``struct``: ``_socket``,
``_signal``, ``_struct`` (no ``json``, ``pathlib`` or ``argparse``: ~30 ms together, measured,
on every warm command; nor ``socket`` and ``signal`` themselves, whose ``enum`` classes
and ``selectors`` cost another ~5 ms: importing this module took 19.9 ms against ~25 ms in a
fresh interpreter, median of 30, 2026-12-06). The protocol is therefore plain bytes:

* launcher → command: ``ready\\n`` (send your request) or ``refused WHY\\n``;
* command → launcher, with its standard streams (SCM_RIGHTS): a 4-byte length, then
  NUL-separated fields: umask, working directory, the number of arguments, the arguments,
  then ``NAME=VALUE`` for every environment variable (none of them can hold a NUL);
* launcher → command: ``pid N\\n`` (the child that will run it) or ``refused WHY\\n``;
* command → launcher: :data:`GO`; then the child's exit code (4 bytes) when it ends.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C half: no stub
import _socket
import os
import stat
import sys
from _struct import Struct

from ferryman.paths import DEFAULT_STATE_DIR, LAUNCHER_SOCKET

TYPE_CHECKING = False  # typing's own costs ~4 ms to import; mypy reads the name all the same
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType
    from typing import NoReturn

__all__ = ["COMMANDS", "Request", "decode_request", "encode_request", "entry", "launched",
           "state_dir_of", "via_launcher"]

COMMANDS = ("migrate", "check")
SKIP_ENV = "FERRYMAN_NO_LAUNCHER"
LENGTH = Struct("!I")
CODE = Struct("!i")
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
DIED = 1  # the launched process ended without a code (killed): as a crash here would
ANSWER_TIMEOUT_S = 10.0  # for the launched process's PID; then the command runs here
GO = b"G"  # the launched process may run the command (cli/launcher.py waits for it)
READY = b"ready\n"  # the launcher takes this command's request
PID = b"pid "  # ... and has forked the process that will run it
REFUSED = b"refused "  # ... or will not run it (why follows)

# Set in a process the launcher forked (cli/launcher.py): the report says so.
launched: list[bool] = []


class Request:
    """What the command hands the launcher besides its standard streams."""

    __slots__ = ("argv", "cwd", "env", "umask")

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], umask: int) -> None:
        self.argv, self.cwd, self.env, self.umask = argv, cwd, env, umask


def encode_request(req: Request) -> bytes:
    """``req`` as the launcher reads it (see the module doc), length first."""
    fields = [str(req.umask).encode(), os.fsencode(req.cwd), str(len(req.argv)).encode(),
              *map(os.fsencode, req.argv),
              *(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in req.env.items())]
    body = b"\0".join(fields)
    return LENGTH.pack(len(body)) + body


def decode_request(body: bytes) -> Request:
    """The request in ``body`` (without its length); ValueError if it is not one."""
    fields = body.split(b"\0")
    if len(fields) < 3 or not fields[2].isdigit():
        raise ValueError("malformed request")
    if not fields[0].isdigit():
        raise ValueError("malformed request: no umask")
    argc = int(fields[2])
    if len(fields) < 3 + argc:
        raise ValueError("malformed request: arguments cut short")
    env: dict[str, str] = {}
    for entry_ in fields[3 + argc:]:
        name, eq, value = entry_.partition(b"=")
        if not eq or not name:
            raise ValueError("malformed request: an environment entry without a name")
        env[os.fsdecode(name)] = os.fsdecode(value)
    return Request(argv=[os.fsdecode(a) for a in fields[3:3 + argc]],
                   cwd=os.fsdecode(fields[1]), env=env, umask=int(fields[0]))


def state_dir_of(argv: Sequence[str]) -> str:
    """The ``--state-dir`` ``argv`` gives (the last one), else the default."""
    found = DEFAULT_STATE_DIR
    for i, word in enumerate(argv):
        if word == "--state-dir" and i + 1 < len(argv):
            found = argv[i + 1]
        elif word.startswith("--state-dir="):
            found = word.partition("=")[2]
    return found


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def via_launcher(argv: Sequence[str]) -> int | None:
    """The exit code of ``argv`` run by the agent's launcher, or None (run it here)."""
    if _command(argv) not in COMMANDS or os.environ.get(SKIP_ENV):
        return None
    path = os.path.join(os.path.abspath(state_dir_of(argv)), LAUNCHER_SOCKET)
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return None
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        try:
            conn.connect(path)
        except OSError:
            return None  # none runs (a stale socket), or not ours to use
        return _handed_over(_Reader(conn), list(argv))
    finally:
        conn.close()


class _Reader:
    """Lines and exact counts of bytes from a connected socket (what ``socket.makefile``
    would give, without importing ``socket``)."""

    __slots__ = ("conn", "pending")

    def __init__(self, conn: _socket.socket) -> None:
        self.conn, self.pending = conn, b""

    def readline(self) -> bytes:
        """Up to and with the next newline; less at the end of the stream."""
        while b"\n" not in self.pending:
            got = self.conn.recv(4096)
            if not got:
                line, self.pending = self.pending, b""
                return line
            self.pending += got
        line, _, self.pending = self.pending.partition(b"\n")
        return line + b"\n"

    def read(self, size: int) -> bytes:
        """``size`` bytes; fewer only at the end of the stream (EINTR is retried)."""
        while len(self.pending) < size:
            got = self.conn.recv(size - len(self.pending))
            if not got:
                break
            self.pending += got
        data, self.pending = self.pending[:size], self.pending[size:]
        return data


def _handed_over(reader: _Reader, argv: list[str]) -> int | None:
    conn = reader.conn
    umask = os.umask(0)
    os.umask(umask)
    body = encode_request(Request(argv, os.getcwd(), dict(os.environ), umask))
    try:
        conn.settimeout(ANSWER_TIMEOUT_S)  # a launcher that hangs is no launcher
        # our streams go only to a launcher that has taken us: sent into a connection it
        # never accepts, they would stay open there (and whoever reads our output wait)
        if reader.readline() != READY:
            return None  # refused: another user, namespace or root directory
        fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
        conn.sendmsg([body], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        answer = reader.readline()
        pid = int(answer[len(PID):]) if answer.startswith(PID) else 0
        if pid <= 0:
            return None  # refused: another user, namespace or root directory
        # Only now does the child run the command: one that does not get this (we timed
        # out, or died) ends without running it, so it never runs twice.
        conn.sendall(GO)
        conn.settimeout(None)
    except (OSError, ValueError):
        return None  # refused or unanswered before anything ran, or a stream is closed
    for sig in FORWARDED:
        _signal.signal(sig, _forwarder(pid))
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
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return forward


def entry() -> NoReturn:
    """The ``ferryman`` command (and ``python -m ferryman``): run by the agent's launcher
    when one answers, else :func:`ferryman.cli.main.main` here (imported only then); then
    the exit without the interpreter's teardown (cli/exit.py)."""
    code = via_launcher(sys.argv[1:])
    if code is None:
        from ferryman.cli.main import main
        code = main()
    from ferryman.cli.exit import exit_now
    exit_now(code)
