"""Our own ``criu swrk`` RPC session: one CRIU process, one request, its notifications.

pycriu lacks NOTIFY, FEATURE_CHECK and VERSION handling and flattens errors to strings, so we
drive swrk ourselves on top of its generated ``rpc_pb2`` messages. The socket is
SOCK_SEQPACKET: every message is one packet, sized with ``MSG_PEEK | MSG_TRUNC``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ferryman.criu import rpc
from ferryman.errors import CriuError, CriuMissing
from ferryman.host.prctl import die_with_parent

log = logging.getLogger(__name__)

NotifyHandler = Callable[[str, int], Awaitable[bool]]
"""Called with (script name, pid) for each CRIU notification; returns success."""


class SwrkSession:
    """A running ``criu swrk`` process and our end of its socket."""

    def __init__(self, sock: socket.socket, proc: asyncio.subprocess.Process) -> None:
        self._sock = sock
        self._proc = proc

    @classmethod
    async def start(cls, criu_bin: str, *, pass_fds: Sequence[int] = (),
                    env: Mapping[str, str] | None = None,
                    new_session: bool = False) -> SwrkSession:
        """``env``: the whole environment of criu (None: ours); ``new_session``: criu runs
        in a session of its own (setsid)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = await asyncio.create_subprocess_exec(
                criu_bin, "swrk", str(theirs.fileno()),
                pass_fds=(theirs.fileno(), *pass_fds),
                env=None if env is None else dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                start_new_session=new_session,
            )
        except FileNotFoundError as exc:
            ours.close()
            raise CriuMissing(f"{criu_bin} not found") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(ours, proc)

    @property
    def pid(self) -> int:
        """The criu process's PID (what it restores descends from it while it works)."""
        return self._proc.pid

    async def _wait_readable(self) -> bool:
        """Until the socket is readable or criu has exited (then False): tasks a dying criu
        restore had forked may keep its end of the socket open, and never answer."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        exited = asyncio.ensure_future(self._proc.wait())

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(self._sock.fileno(), ready)
        try:
            waits: set[asyncio.Future[Any]] = {fut, exited}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(self._sock.fileno())
            exited.cancel()
        return fut.done() or not exited.done() or exited.cancelled()

    async def _recv(self, action: str) -> Any:
        alive = True
        while True:
            try:
                size = self._sock.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)
                if size == 0:
                    raise CriuError(action, reason="criu swrk exited without answering")
                data = self._sock.recv(size)
            except BlockingIOError:
                if not alive:
                    raise CriuError(action, reason=f"criu swrk died (exit status "
                                    f"{self._proc.returncode}) without answering") from None
                alive = await self._wait_readable()
                continue
            except ConnectionError as exc:
                raise CriuError(action, reason=f"criu swrk socket broke: {exc}") from exc
            resp = rpc.Resp()
            resp.ParseFromString(data)
            return resp

    async def _send(self, msg: Any) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self._sock, msg.SerializeToString())

    async def call(self, req: Any, action: str, on_notify: NotifyHandler | None = None) -> Any:
        """Send ``req`` and return CRIU's final response, answering notifications on the way.

        A failing or raising notify handler is answered with failure (CRIU then rolls back:
        for a dump, the tasks are resumed) and its exception propagates after CRIU finishes.
        """
        await self._send(req)
        pending: BaseException | None = None
        while True:
            resp = await self._recv(action)
            if resp.type != rpc.NOTIFY:
                if pending is not None:
                    raise pending
                return resp
            script = resp.notify.script
            ok = True
            if on_notify is not None and pending is None:
                try:
                    ok = await on_notify(script, resp.notify.pid)
                except BaseException as exc:  # noqa: BLE001 - CRIU must get an answer; re-raised
                    pending = exc
                    ok = False
            elif pending is not None:
                ok = False
            log.debug("criu notify %s -> %s", script, ok)
            answer = rpc.Req()
            answer.type = rpc.NOTIFY
            answer.notify_success = ok
            try:
                await self._send(answer)
            except OSError as exc:
                raise CriuError(action, reason=f"criu swrk went away at {script}") from (
                    pending or exc)

    async def kill(self) -> None:
        """Stop CRIU now (cancellation): its tasks are detached, see the callers' notes."""
        self._sock.close()
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        await self._proc.wait()

    async def close(self) -> int:
        """Close our socket and reap CRIU; returns its exit status."""
        self._sock.close()
        try:
            return await asyncio.wait_for(self._proc.wait(), timeout=30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            return await self._proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            raise
