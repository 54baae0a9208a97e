"""The agent's launcher: ``ferryman migrate`` and ``ferryman check`` started warm.

A ``ferryman`` command spends ~180 ms importing itself and, on a node's first migration,
~50 ms asking CRIU for its facts, all before it connects anywhere. ``ferryman serve`` starts
this launcher beside it (``--no-launcher`` does not): a process that has imported what those
commands run and asked CRIU once (:func:`ferryman.criu.factcache.remember_in_process`), then
waits on ``STATE_DIR/launcher.sock`` (0600). The command (cli/launch.py) hands it its argv,
working directory, environment, umask and standard streams; the launcher forks, and the child
*is* the command from then on: it joins the command's cgroups, runs ``cli.main.main`` exactly
as the command would have, writes its output to the command's own streams and sends back
its exit code. The command waits for that code and forwards the signals it gets; when the
command dies, so does the child (``pidfd``: a killed controller is a killed controller).

Only a client of the launcher's own user (``SO_PEERCRED``) in every one of the launcher's
namespaces and with its root directory is served: anything else is refused and the command
runs by itself, as without an agent. The child runs with the agent's resource limits,
capabilities and security labels (as a daemon's work does), not the command's.

The launcher runs at nice 19 (its warm-up yields to the agent's migrations); each child takes
the command's priority back before anything else.

Single-threaded on purpose (a fork copies only the calling thread): one ``accept`` loop,
children reaped by the kernel (``SIGCHLD`` ignored here, restored in each child).

``python -m ferryman.cli.launcher SOCKET --state-dir DIR [--criu BIN] [--pki DIR --name NAME]``
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import signal
import socket
import struct
import sys
import threading
import traceback
from pathlib import Path
from typing import NoReturn

from ferryman.cli.launch import (  # one protocol, one place
    CODE,
    GO,
    LENGTH,
    PID,
    READY,
    REFUSED,
    Request,
    decode_request,
)

__all__ = ["NAMESPACES", "main", "same_place"]

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
MAX_REQUEST = 1 << 20  # argv and environment
STREAMS = 3  # stdin, stdout, stderr


def same_place(pid: int, proc: Path = Path("/proc")) -> str | None:
    """Why process ``pid`` does not see the system as this process does (another namespace,
    another root directory), or None when it does."""
    for ns in NAMESPACES:
        try:
            theirs = (proc / str(pid) / "ns" / ns).stat().st_ino
            ours = (proc / "self" / "ns" / ns).stat().st_ino
        except OSError as exc:
            return f"cannot compare {ns} namespaces: {exc.strerror or exc}"
        if theirs != ours:
            return f"another {ns} namespace"
    try:
        theirs_root, ours_root = (proc / str(pid) / "root").stat(), Path("/").stat()
    except OSError as exc:
        return f"cannot compare root directories: {exc.strerror or exc}"
    if (theirs_root.st_dev, theirs_root.st_ino) != (ours_root.st_dev, ours_root.st_ino):
        return "another root directory"
    return None


def _peer(conn: socket.socket) -> tuple[int, int]:
    pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET,
                                                         socket.SO_PEERCRED, 12))
    return pid, uid


def _request(conn: socket.socket) -> tuple[Request, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, STREAMS)
    try:
        if len(fds) != STREAMS or len(data) < LENGTH.size:
            raise ValueError("no standard streams")
        (size,) = LENGTH.unpack_from(data)
        if size > MAX_REQUEST:
            raise ValueError("request too large")
        body = data[LENGTH.size:]
        while len(body) < size:
            more = conn.recv(size - len(body))
            if not more:
                raise ValueError("request cut short")
            body += more
        return decode_request(body[:size]), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _refuse(conn: socket.socket, why: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(REFUSED + why.encode(errors="replace").replace(b"\n", b" ") + b"\n")


def _join_cgroups(pid: int) -> None:
    """Move this process into the cgroups of ``pid`` (v1 hierarchies and v2), so that it is
    accounted, limited and stopped with the command, not with the agent's service. Only
    where it is not there already: a write to ``cgroup.procs`` waits for an RCU grace period
    (1-30 ms measured here, even into the cgroup it is in), on every warm command."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        ours = set(Path("/proc/self/cgroup").read_text().splitlines())
    except OSError:
        return
    for line in lines:
        if line in ours:
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base = Path("/sys/fs/cgroup")
            if not (base / "cgroup.controllers").exists():
                base = base / "unified"
        else:
            name = controllers.removeprefix("name=")
            base = Path("/sys/fs/cgroup") / name
        procs = base / path.lstrip("/") / "cgroup.procs"
        with contextlib.suppress(OSError):  # not mounted here, not writable: the agent's
            procs.write_text(str(os.getpid()))


def _die_with(pid: int) -> None:
    """SIGKILL this process when process ``pid`` (the command) ends."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except OSError:
        os.kill(os.getpid(), signal.SIGKILL)
        return

    def watch() -> None:
        select.select([fd], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="launcher-client", daemon=True).start()


def _child(listener: socket.socket, conn: socket.socket, req: Request,
           fds: list[int], client: int) -> NoReturn:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        listener.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for stream in (sys.stdout, sys.stderr):  # a terminal's lines appear as they come
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=stream.isatty())
        _join_cgroups(client)
        # the command's priority, not the launcher's (nice 19): root may raise it again
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, client))
        _die_with(client)
        os.chdir(req.cwd)
        os.umask(req.umask)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in req.env.items()})
        sys.argv = ["ferryman", *req.argv]
        from ferryman.cli import launch

        launch.launched[:] = [True]
        conn.sendall(PID + str(os.getpid()).encode() + b"\n")
        if conn.recv(len(GO)) != GO:  # the command gave up waiting (cli/launch.py): it runs
            os._exit(0)               # the command itself, so this one must not
        code = _run(req.argv)
    except BaseException:  # noqa: BLE001 - whatever happened, the command gets a code
        traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    with contextlib.suppress(OSError):
        conn.sendall(CODE.pack(code))
    os._exit(code)


def _run(argv: list[str]) -> int:
    import atexit
    import logging

    from ferryman.cli.main import main

    logging.getLogger().handlers.clear()  # main() sets up the command's own
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help, usage errors
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    atexit._run_exitfuncs()
    return code


def _serve_one(listener: socket.socket, conn: socket.socket) -> None:
    client, uid = _peer(conn)
    if uid != os.geteuid():
        _refuse(conn, f"user {uid} is not the agent's")
        return
    why = same_place(client)
    if why is not None:
        _refuse(conn, why)
        return
    conn.sendall(READY)  # the command sends its streams only now (cli/launch.py)
    try:
        req, fds = _request(conn)
    except (OSError, ValueError) as exc:
        _refuse(conn, str(exc))
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if os.fork() == 0:
        _child(listener, conn, req, fds, client)
    for fd in fds:
        os.close(fd)


def _warm(criu: str, state_dir: Path, node: tuple[Path, str] | None) -> None:
    """Import what the commands run, ask CRIU for its facts once, and load the agent's own
    credentials (``node``: PKI directory, name) into a TLS context: OpenSSL and cryptography
    set themselves up on their first use, ~6 ms measured in a launched command's
    ``load_node`` and first context, now done once here."""
    import asyncio

    import ferryman.agent.checkrun
    import ferryman.agent.gate
    import ferryman.agent.source
    import ferryman.cli.check
    import ferryman.cli.main
    import ferryman.cli.migrate
    import ferryman.cli.progress
    import ferryman.pki  # noqa: F401
    from ferryman.criu import factcache
    from ferryman.criu.client import Criu
    from ferryman.errors import FerrymanError

    factcache.remember_in_process()
    if node is not None:
        _warm_tls(*node)
    try:
        asyncio.run(Criu(criu).facts(state_dir))
    except FerrymanError as exc:  # the commands ask, and say what is wrong
        print(f"ferryman launcher: CRIU's facts not asked ahead: {exc}", file=sys.stderr)
    for t in threading.enumerate():  # asyncio's child watchers: gone before any fork
        if t is not threading.main_thread():
            t.join(5)


def _warm_tls(pki: Path, name: str) -> None:
    from ferryman.errors import FerrymanError
    from ferryman.pki import load_node
    from ferryman.pki.tls import client_context

    try:
        client_context(load_node(pki, name))
    except FerrymanError as exc:  # the commands check their own, and say what is wrong
        print(f"ferryman launcher: TLS not set up ahead: {exc.one_line()}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ferryman.cli.launcher")
    ap.add_argument("socket", type=Path)
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--criu", default="criu")
    ap.add_argument("--pki", type=Path)  # the agent's credentials, to warm TLS up with
    ap.add_argument("--name")
    args = ap.parse_args(argv)
    os.nice(19)  # its warm-up and its waiting yield to the agent's work (children: _child)
    _warm(args.criu, args.state_dir, (args.pki, args.name) if args.pki and args.name else None)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = args.socket.with_name(f".{args.socket.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    old = os.umask(0o177)
    try:
        listener.bind(str(tmp))
    finally:
        os.umask(old)
    tmp.chmod(0o600)
    listener.listen(64)
    tmp.replace(args.socket)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    gc.freeze()  # what was imported stays shared with the children
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                _serve_one(listener, conn)
            except OSError as exc:
                print(f"ferryman launcher: a request failed: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
