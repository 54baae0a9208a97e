"""``runc checkpoint`` and ``runc restore`` as ferryman's migration steps.

:class:`RuncDumper` has the shape of :meth:`ferryman.criu.client.Criu.dump` (see
:class:`Dumper`), so the SOURCE role drives a container exactly like a process tree: the
``pre-dump``, ``post-dump`` and ``status-ready`` notifications reach the same handler, and
the handler's answer at ``post-dump`` decides. runc answers CRIU's RPC notifications itself,
so ours come from the action script of :func:`ferryman.targets.runc.hold_script` (pre-dump,
post-dump, held on a lock) and from runc's ``--status-fd`` (status-ready, post-copy).

:func:`restore` runs ``runc restore --detach`` with CRIU's ``leave-stopped``: the container
comes back stopped, under the same id, and runs only when the destination resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from ferryman.criu.client import PageServerAddress, TlsFiles
from ferryman.criu.filelocks import dumped_file_locks
from ferryman.criu.logs import first_error
from ferryman.criu.swrk import NotifyHandler
from ferryman.errors import CriuError, NoSuchProcess, RuncError, RuncMissing, UsageError
from ferryman.host import procfs
from ferryman.host.filelocks import tree_holds_locks
from ferryman.host.ghosts import ghost_limit, largest_ghost
from ferryman.host.prctl import die_with_parent
from ferryman.targets.runc import (
    Runc,
    checkpoint_argv,
    criu_conf,
    hold_script,
    restore_argv,
    runc_message,
)

log = logging.getLogger(__name__)
CONFIG_ENV = "CRIU_CONFIG_FILE"


class Dumper(Protocol):
    """What the SOURCE role calls to freeze and dump its workload (Criu or RuncDumper)."""

    async def dump(self, pid: int, images_dir: Path, *,
                   page_server: PageServerAddress | None = None, tls: TlsFiles | None = None,
                   on_notify: NotifyHandler | None = None, lazy: bool = False,
                   track_mem: bool = False, track_mem_uffd: bool = False,
                   parent: str | None = None,
                   tcp_established: bool = False, pre_dump: bool = False,
                   freeze_cgroup: str | None = None, log_file: str = "dump.log",
                   network_lock: bool = True) -> None:
        ...


class RuncDumper:
    """Checkpoints one container with runc; control files live in ``ctl_dir``."""

    def __init__(self, runc: Runc, container: str, ctl_dir: Path,
                 on_frozen: Callable[[], None] | None = None,
                 timings: dict[str, float] | None = None, *,
                 env: Mapping[str, str] | None = None) -> None:
        self.runc = runc
        self.env = os.environ if env is None else env  # runc's, passed on to its criu
        self.container = container
        self.ctl = ctl_dir
        self.on_frozen = on_frozen  # called when the caller froze the container's cgroup
        self.timings = timings  # gets runc_after_commit_ms (cold): runc's work after "go"

    async def dump(self, pid: int, images_dir: Path, *,
                   page_server: PageServerAddress | None = None, tls: TlsFiles | None = None,
                   on_notify: NotifyHandler | None = None, lazy: bool = False,
                   track_mem: bool = False, track_mem_uffd: bool = False,
                   parent: str | None = None,
                   tcp_established: bool = False, pre_dump: bool = False,
                   freeze_cgroup: str | None = None, log_file: str = "dump.log",
                   network_lock: bool = True) -> None:
        """Checkpoint. runc passes the container's own cgroup to CRIU; a ``freeze_cgroup``
        from the caller means the caller freezes it when ``on_notify`` gets ``pre-dump``
        (CRIU waits there until it has; then ``on_frozen`` is told). ``parent``: a
        pre-dump's images (runc's --parent-path; runc sets ``track_mem`` itself).
        ``pre_dump``: one pre-copy iteration (:meth:`pre_dump`). runc names CRIU's log
        ``dump.log`` in ``images_dir`` whatever ``log_file`` says. ``track_mem_uffd`` is
        never set for a container (the source refuses pre-copy without soft-dirty there)."""
        if track_mem_uffd:
            raise UsageError("runc containers pre-copy only with soft-dirty tracking",
                             hint="use --mode cold or --mode postcopy")
        del track_mem, log_file, network_lock  # runc's CRIU configuration decides
        if pre_dump:
            await self.pre_dump(images_dir, page_server=page_server, tls=tls, parent=parent)
            return
        self.ctl.mkdir(mode=0o700, exist_ok=True)
        events, lock, decision = self.ctl / "events", self.ctl / "hold.lock", self.ctl / "decision"
        freeze_lock = self.ctl / "freeze.lock" if freeze_cgroup is not None else None
        script, conf = self.ctl / "hold.sh", self.ctl / "criu.conf"
        for p in (events, decision):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        os.mkfifo(events, 0o600)
        script.write_text(hold_script(events, lock, decision, _freezer_control(freeze_cgroup),
                                      freeze_lock))
        script.chmod(0o700)
        tree = procfs.tree(pid)
        conf.write_text(criu_conf(tls=tls, serves_pages=lazy, action_script=script,
                                  ghost_limit=ghost_limit(largest_ghost(tree))))
        # see checkpoint_argv: frozen, not destroyed; not with live TCP connections, whose
        # lock CRIU would lift at once (a client's bytes then land in the frozen copy)
        keep = lazy and freeze_cgroup is not None and not tcp_established
        lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        freezing = _Freezing(freeze_lock, self.on_frozen)
        ev_fd = os.open(events, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        status_r, status_w = os.pipe() if lazy else (-1, -1)
        hold = _Hold(lock_fd, decision)
        runc_log = images_dir / "runc-checkpoint.log"
        try:
            argv = checkpoint_argv(self.runc.binary, self.runc.root, self.container,
                                   images=images_dir, log_file=runc_log,
                                   page_server=page_server, lazy=lazy,
                                   status_fd=status_w if lazy else None,
                                   tcp_established=tcp_established, parent=parent,
                                   leave_running=keep, file_locks=tree_holds_locks(tree))
            proc = await _spawn(argv, {**self.env, CONFIG_ENV: str(conf)},
                                (status_w,) if lazy else (), self.runc.binary)
            if lazy:
                os.close(status_w)
                status_w = -1
            pending = await self._serve(proc, pid, ev_fd=ev_fd, status_fd=status_r,
                                        hold=hold, freezing=freezing, on_notify=on_notify)
        finally:
            hold.release()
            freezing.release()
            for fd in (ev_fd, status_r, status_w):
                if fd >= 0:
                    os.close(fd)
        rc = await proc.wait()
        if hold.went_at is not None and not lazy and self.timings is not None:
            self.timings["runc_after_commit_ms"] = (time.monotonic() - hold.went_at) * 1000
        err = _read(runc_log)
        if rc != 0 or keep:  # it still runs here (kept: frozen, for the source to decide)
            self.runc.forget_checkpoint_marker(self.container)
        if pending is not None:
            raise pending
        if rc != 0:
            log_path = images_dir / "dump.log"
            reason = first_error(log_path) or runc_message(err)
            raise RuncError("checkpoint", self.container, f"{reason} (log: {log_path})")

    async def pre_dump(self, images_dir: Path, *, page_server: PageServerAddress | None,
                       tls: TlsFiles | None, parent: str | None) -> None:
        """``runc checkpoint --pre-dump``: the container's memory into ``page_server`` while
        it runs (CRIU freezes its cgroup only to collect the page map).

        CRIU runs no action script in a pre-dump, so there is nothing to hold or answer: the
        CRIU configuration file carries only TLS (and the network lock, unused here), and
        CRIU's connection to the destination's page server is TLS as in the final dump.
        """
        self.ctl.mkdir(mode=0o700, exist_ok=True)
        conf = self.ctl / "criu-pre-dump.conf"
        conf.write_text(criu_conf(tls=tls))
        runc_log = images_dir / "runc-checkpoint.log"
        argv = checkpoint_argv(self.runc.binary, self.runc.root, self.container,
                               images=images_dir, log_file=runc_log, page_server=page_server,
                               parent=parent, pre_dump=True)
        proc = await _spawn(argv, {**self.env, CONFIG_ENV: str(conf)}, (), self.runc.binary)
        try:
            rc = await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # CRIU lets go of the tasks: they run on
            await proc.wait()
            raise
        if rc != 0:
            log_path = images_dir / "dump.log"
            reason = first_error(log_path) or runc_message(_read(runc_log))
            raise RuncError("checkpoint --pre-dump", self.container,
                            f"{reason} (log: {log_path})")

    async def _serve(self, proc: asyncio.subprocess.Process, pid: int, *, ev_fd: int,
                     status_fd: int, hold: _Hold, freezing: _Freezing,
                     on_notify: NotifyHandler | None) -> BaseException | None:
        """Answer notifications until runc exits; returns the handler's exception, if any."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()
        buf = bytearray()

        def on_event() -> None:
            with contextlib.suppress(BlockingIOError):
                buf.extend(os.read(ev_fd, 4096))
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf[:] = rest
                queue.put_nowait(line.decode(errors="replace").strip())

        def on_status() -> None:
            if os.read(status_fd, 1) == b"\0":
                queue.put_nowait("status-ready")
            loop.remove_reader(status_fd)

        loop.add_reader(ev_fd, on_event)
        if status_fd >= 0:
            loop.add_reader(status_fd, on_status)
        pending: BaseException | None = None
        exited = asyncio.ensure_future(proc.wait())
        try:
            while True:
                got = asyncio.ensure_future(queue.get())
                await asyncio.wait({exited, got}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    return pending
                script = got.result()
                ok = pending is None
                if on_notify is not None and pending is None:
                    try:
                        ok = await on_notify(script, pid)
                    except BaseException as exc:  # noqa: BLE001 - answered "no", re-raised
                        pending, ok = exc, False
                log.debug("runc checkpoint: %s -> %s", script, ok)
                if script == "pre-dump":
                    freezing.done()
                elif script == "post-dump":
                    hold.answer(ok)
        except asyncio.CancelledError:
            # Killing runc and CRIU (their own process group) detaches the frozen tasks:
            # they continue here.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            self.runc.forget_checkpoint_marker(self.container)
            raise
        finally:
            loop.remove_reader(ev_fd)
            if status_fd >= 0:
                loop.remove_reader(status_fd)
            if not exited.done():
                exited.cancel()


class _Hold:
    """Ferryman's side of the hold script: the decision file and the exclusive lock."""

    def __init__(self, lock_fd: int, decision: Path) -> None:
        self.lock_fd = lock_fd
        self.decision = decision
        self.went_at: float | None = None  # when "go" was given

    def answer(self, ok: bool) -> None:
        self.decision.write_text("go\n" if ok else "no\n")
        if ok:
            self.went_at = time.monotonic()
        self.release()

    def release(self) -> None:
        if self.lock_fd >= 0:
            os.close(self.lock_fd)  # the script's shared lock goes through now
            self.lock_fd = -1


class _Freezing:
    """The hold script's pre-dump wait: ferryman holds ``lock`` exclusively until the handler
    has frozen the container's cgroup, then tells ``on_frozen``."""

    def __init__(self, lock: Path | None, on_frozen: Callable[[], None] | None) -> None:
        self.on_frozen = on_frozen
        self.fd = -1
        if lock is not None:
            self.fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def done(self) -> None:
        if self.fd >= 0 and self.on_frozen is not None:
            self.on_frozen()
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def _spawn(argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...],
                 binary: str) -> asyncio.subprocess.Process:
    log.debug("spawn %s", " ".join(argv))
    try:
        return await asyncio.create_subprocess_exec(
            *argv, env=env, pass_fds=pass_fds, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent)
    except FileNotFoundError as exc:
        raise RuncMissing(binary) from exc


def _freezer_control(cgroup: str | None) -> Path | None:
    """The freezer control file of the cgroup the caller froze (v2, else v1), or None."""
    if cgroup is None:
        return None
    v2 = Path(cgroup) / "cgroup.freeze"
    return v2 if v2.exists() else Path(cgroup) / "freezer.state"


UNREAPED_S = 2.0  # how long runc may leave its exited criu unreaped before it counts as stuck


async def wait_runc(proc: asyncio.subprocess.Process, poll_s: float = 0.05,
                    unreaped_s: float = UNREAPED_S) -> int:
    """runc's exit status. runc reads its criu's answer from a socket until that socket
    closes: a criu restore killed mid-way leaves tasks it had forked holding the other end,
    and runc waits for ever (the fault matrix's runc cells). So once runc's criu has stayed
    dead for ``unreaped_s`` (a zombie runc has not reaped: it is still reading), runc is
    killed; the caller's clean-up kills what the dead criu left (destination_end.py,
    procfs.holders). Not at once: a criu that answered and exited is a zombie too until runc
    reaps it, which on a slow machine (the TCG guests) can take past one poll, and killing
    runc then failed a good restore with no message (the VM suite's runc-hybrid, once)."""
    seen: tuple[int, float] | None = None  # the unreaped criu, and since when
    while True:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(proc.wait()), poll_s)
        dead = _dead_criu(proc.pid)
        now = time.monotonic()
        if not dead or seen is None or seen[0] != dead:
            seen = (dead, now) if dead else None
            continue
        if now - seen[1] < unreaped_s:
            continue
        log.warning("runc's criu (PID %d) died without answering (unreaped for %.1f s): "
                    "killing runc %d", dead, now - seen[1], proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return -signal.SIGKILL


def _dead_criu(pid: int) -> int:
    """A criu child of ``pid`` that died and was not reaped yet, or 0."""
    with contextlib.suppress(NoSuchProcess):
        for kid in procfs.children(pid):
            with contextlib.suppress(NoSuchProcess, OSError):
                if procfs.state(kid) == "Z" and \
                        Path(f"/proc/{kid}/comm").read_text().strip() == "criu":
                    return kid
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


async def restore(runc: Runc, container: str, *, bundle: Path, images_dir: Path,
                  output: Path, lazy: bool = False, tcp_established: bool = False) -> int:
    """Restore ``container`` stopped; returns its init PID. Its stdout and stderr go to a
    pipe drained into ``output`` by a process of its own (it outlives this agent)."""
    conf = images_dir / "criu-restore.conf"
    conf.write_text(criu_conf(leave_stopped=True))
    runc_log = images_dir / "runc-restore.log"
    pid_file = images_dir / "runc-restore.pid"
    argv = restore_argv(runc.binary, runc.root, container, bundle=bundle, images=images_dir,
                        log_file=runc_log, pid_file=pid_file, lazy=lazy,
                        tcp_established=tcp_established,
                        file_locks=dumped_file_locks(images_dir))
    read_end, write_end = os.pipe()
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with output.open("ab") as out:
            drainer = await asyncio.create_subprocess_exec(
                "cat", stdin=read_end, stdout=out, stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True)
        del drainer  # asyncio reaps it once the container's pipe closes
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env={**os.environ, CONFIG_ENV: str(conf)},
                stdin=asyncio.subprocess.DEVNULL, stdout=write_end, stderr=write_end,
                preexec_fn=die_with_parent)
        except FileNotFoundError as exc:
            raise RuncMissing(runc.binary) from exc
    finally:
        os.close(read_end)
        os.close(write_end)
    if (status := await wait_runc(proc)) != 0:
        log_path = images_dir / "restore.log"
        reason = first_error(log_path) or runc_message(_read(runc_log), status)
        raise CriuError("restore", log_path=str(log_path) if log_path.exists() else None,
                        reason=f"runc restore {container}: {reason}")
    try:  # (runc state would cost another runc run inside the frozen window)
        return int(pid_file.read_text().strip())
    except (OSError, ValueError) as exc:
        raise CriuError("restore", reason=f"runc restore {container} left no usable PID "
                        f"file: {exc}") from exc
