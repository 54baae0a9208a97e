"""``ferryman serve``: the asyncio TLS agent. Each connection is one DESTINATION session.

The agent accepts connections itself, so that no peer can take all of its file descriptors:
TLS handshakes get ``Timeouts.handshake`` and at most ``Limits.handshakes`` run at once (one
more closes the oldest: a real controller's handshake takes milliseconds, an idle one waits
to be dropped); authenticated sessions are at most ``Limits.sessions`` (one more is closed at
once). When the process runs out of descriptors, accepting pauses and says so once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import ssl
import sys

from ferryman import wire
from ferryman.agent import bundles, orphans
from ferryman.agent.channel import Channel
from ferryman.agent.config import AgentConfig
from ferryman.agent.destination import DestinationSession, remove_incomplete
from ferryman.agent.limits import BufferBudget, Oldest, Slots
from ferryman.agent.statelock import hold_state_dir
from ferryman.criu import stats
from ferryman.criu.client import Criu, CriuVersion
from ferryman.errors import FerrymanError, PeerRejected
from ferryman.host import portguard
from ferryman.host.prctl import die_with_parent
from ferryman.host.sdnotify import Notifier
from ferryman.paths import LAUNCHER_SOCKET
from ferryman.pki import tls

log = logging.getLogger(__name__)
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_PAUSE_S = 0.5  # after EMFILE and the like: a session's end frees descriptors
ACCEPT_WARN_EVERY_S = 60.0


class Agent:
    def __init__(self, config: AgentConfig, notifier: Notifier | None = None) -> None:
        self.cfg = config
        self.notifier = notifier or Notifier(None)  # systemd's NOTIFY_SOCKET, if any
        self.criu = Criu(config.criu_bin)
        self._tasks: set[asyncio.Task[None]] = set()  # every connection, handshaking or not
        self._handshakes: Oldest[asyncio.Task[None]] = Oldest(config.limits.handshakes)
        self._sessions = Slots(config.limits.sessions)
        self.migrations = Slots(config.limits.migrations)
        self.budget = BufferBudget(config.limits.buffered_bytes)
        self._evicted: set[asyncio.Task[None]] = set()  # handshakes dropped for newer ones

    async def _connection(self, sock: socket.socket, addr: str, ctx: ssl.SSLContext) -> None:
        """One accepted connection: the TLS handshake, then (room permitting) a session."""
        task = asyncio.current_task()
        assert task is not None
        if (oldest := self._handshakes.add(task)) is not None:
            self._evicted.add(oldest)
            oldest.cancel()  # an unfinished handshake: its transport closes, its fd goes back
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=ctx,
                ssl_handshake_timeout=self.cfg.timeouts.handshake)
        except (OSError, ssl.SSLError, TimeoutError) as exc:  # asyncio closed the socket
            log.debug("TLS handshake with %s failed: %r", addr, exc)
            return
        except asyncio.CancelledError:
            if task not in self._evicted:
                raise  # the agent stops
            self._evicted.discard(task)
            task.uncancel()
            log.debug("TLS handshake with %s dropped for a newer connection", addr)
            return
        finally:
            self._handshakes.discard(task)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            peer = tls.peer_name(writer.get_extra_info("ssl_object"))
        except PeerRejected:
            log.warning("connection from %s without a usable certificate: closed", addr)
            writer.transport.abort()
            return
        channel = Channel(reader, writer, wire.Role.DESTINATION, peer, self.budget)
        if not self._sessions.take():
            log.warning("session from %s (%s) refused: already %d sessions (the limit)",
                        peer, addr, self._sessions.limit)
            with contextlib.suppress(FerrymanError):  # it may not listen: it is told anyway
                await channel.send(wire.Error(
                    code="busy", message=f"{self.cfg.name} already serves "
                    f"{self._sessions.limit} sessions, its limit: try again shortly"))
            await channel.close()
            return
        try:
            await self._session(channel, addr)
        finally:
            self._sessions.give_back()

    async def _session(self, channel: Channel, addr: str) -> None:
        log.info("session from %s (%s)", channel.peer, addr)
        try:
            await DestinationSession(channel, self.cfg, self.criu, self.migrations).run()
        except FerrymanError as exc:
            log.warning("session from %s ended: %s", channel.peer, exc.one_line())
        finally:  # what it did is done: its copy held or killed, its address given back
            log.info("session with %s (%s) over", channel.peer, addr)

    async def _accept(self, listener: socket.socket, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        last_warning = -ACCEPT_WARN_EVERY_S
        missed = 0
        while True:
            try:
                sock, address = await loop.sock_accept(listener)
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    log.debug("accept failed: %s", exc)  # e.g. ECONNABORTED: that one's gone
                    continue
                missed += 1
                if loop.time() - last_warning >= ACCEPT_WARN_EVERY_S:
                    log.warning("cannot accept connections: %s (%d times since the last "
                                "warning); pausing %.1f s each time", exc.strerror, missed,
                                ACCEPT_PAUSE_S)
                    last_warning, missed = loop.time(), 0
                await asyncio.sleep(ACCEPT_PAUSE_S)
                continue
            addr = str(address[0])
            task = asyncio.ensure_future(self._connection(sock, addr, ctx))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _bind(self) -> socket.socket:
        """The agent's port, bound (others learn it is taken) but not listening yet: no peer
        connects before the agent has tidied up after an earlier one."""
        host, port = self.cfg.listen_host, self.cfg.listen_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
        except OSError as exc:
            listener.close()
            raise FerrymanError(f"cannot listen on {host}:{port}: {exc.strerror}",
                                hint="another agent (or program) may listen there: stop it "
                                     "or choose another --listen; the address must be one of "
                                     "this node's") from exc
        listener.setblocking(False)
        return listener

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        # first: this state directory and this port are ours, before anything in them is
        # tidied up (a second agent started by mistake must not sweep the first one's work)
        state_lock = hold_state_dir(self.cfg.state_dir)
        try:
            await self._serve_locked(ready)
        finally:
            os.close(state_lock)  # an agent run in a test's own process: the next may start

    async def _tidy_up(self) -> tuple[ssl.SSLContext, CriuVersion]:
        """Before serving: CRIU's version, the TLS context, and what an earlier agent left."""
        version = (await self.criu.facts(self.cfg.state_dir)).version  # asked once, at start
        stats.warm_up()  # restore stats are read between RESTORED and the reply
        ctx = tls.server_context(self.cfg.creds)
        for name in remove_incomplete(self.cfg.state_dir):
            log.warning("removed the images of interrupted migration %s", name)
        for name in bundles.sweep(self.cfg.bundles):
            log.warning("removed the synced files of container %s (its migration was "
                        "interrupted)", name)
        for table in portguard.remove_stale(self.cfg.listen_port):
            log.warning("removed page-server guard %s of an earlier agent", table)
        for line in orphans.settle_records(self.cfg.state_dir):
            log.warning("held copy %s", line)
        return ctx, version

    async def _serve_locked(self, ready: asyncio.Event | None) -> None:
        listener = self._bind()
        try:
            ctx, version = await self._tidy_up()
            listener.listen(128)
        except BaseException:
            listener.close()
            raise
        launcher = await start_launcher(self.cfg) if self.cfg.launcher else None
        accepting = asyncio.ensure_future(self._accept(listener, ctx))
        log.info("agent %s listening on %s:%d (criu %s, state %s)", self.cfg.name,
                 self.cfg.listen_host, self.cfg.listen_port, version, self.cfg.state_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set()
        # the socket listens since _serve_locked() and the accept loop is scheduled: a peer that
        # connects from now on is served
        self.notifier.ready(f"listening on {self.cfg.listen_host}:{self.cfg.listen_port}")
        try:
            await stop.wait()
            log.info("agent %s stopping", self.cfg.name)
            self.notifier.stopping("stopping: no new connections, ending sessions")
        finally:
            if launcher is not None:
                await stop_launcher(self.cfg, launcher)
            accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await accepting
            listener.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)


async def start_launcher(cfg: AgentConfig) -> asyncio.subprocess.Process | None:
    """This node's launcher (cli/launcher.py) on ``STATE_DIR/launcher.sock``; None when it
    cannot start (the commands then run by themselves, as without an agent)."""
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ferryman.cli.launcher",
            str(cfg.state_dir / LAUNCHER_SOCKET), "--state-dir", str(cfg.state_dir),
            "--criu", cfg.criu_bin, "--pki", str(cfg.creds.cert.parent), "--name", cfg.name,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=die_with_parent)
    except OSError as exc:
        log.warning("the launcher did not start: %s (commands here start cold)", exc)
        return None


async def stop_launcher(cfg: AgentConfig, launcher: asyncio.subprocess.Process) -> None:
    """The launcher ends with the agent; commands it started run on to their end."""
    (cfg.state_dir / LAUNCHER_SOCKET).unlink(missing_ok=True)
    if launcher.returncode is None:
        launcher.terminate()
    try:
        await asyncio.wait_for(launcher.wait(), 5)
    except TimeoutError:
        launcher.kill()
        await launcher.wait()
