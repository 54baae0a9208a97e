"""Thin asyncio TCP shell around :mod:`ferryman.power.codec`.

One connection per request; each attempt (connect, send, read the whole reply) is bounded by
``timeout``. Timeouts, resets and replies cut short are retried up to ``retries`` times; an
unresolvable name, no route, or a refused port are not (refused port 9999 is KLAP firmware).
OS errors are translated into PowerError subclasses here, once, with ``raise ... from``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Literal

from ferryman.power.address import PlugAddress
from ferryman.power.codec import FrameDecoder, JSONObject, encode_request, parse_payload
from ferryman.power.errors import (
    PlugConnectionClosed,
    PlugProtocolError,
    PlugUnreachable,
    PlugUnsupportedFirmware,
    PowerError,
    about_plug,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_RETRIES = 3
_READ_SIZE = 65536

_FailureKind = Literal["connect-timeout", "silent", "partial", "closed", "reset"]


class _AttemptError(Exception):
    """One attempt failed in a way that another attempt may not."""

    def __init__(self, kind: _FailureKind, cause: BaseException, *, received: int = 0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.cause = cause
        self.received = received


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    queries: int
    attempts: int


class PlugClient:
    """Sends JSON requests to one plug over TCP and returns its parsed (unchecked) replies."""

    def __init__(
        self,
        address: PlugAddress,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        retry_delay: float = 0.05,
    ) -> None:
        if timeout <= 0 or retries < 0 or retry_delay < 0:
            raise ValueError("timeout must be > 0, retries and retry_delay >= 0")
        self._address = address
        self._timeout = timeout
        self._retries = retries
        self._retry_delay = retry_delay
        self._queries = 0
        self._attempts = 0

    @property
    def address(self) -> PlugAddress:
        return self._address

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(queries=self._queries, attempts=self._attempts)

    async def query(self, request: JSONObject) -> JSONObject:
        """Send ``request`` and return the decoded reply; ``err_code`` is the caller's job."""
        self._queries += 1
        data = encode_request(request)
        with about_plug(str(self._address)):
            return parse_payload(await self._exchange(data))

    async def _exchange(self, data: bytes) -> bytes:
        failure: _AttemptError | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(self._retry_delay * attempt)
            self._attempts += 1
            try:
                return await self._attempt(data)
            except _AttemptError as exc:
                log.debug("attempt %d to %s failed: %s (%s)",
                          attempt + 1, self._address, exc.kind, exc.cause)
                failure = exc
        assert failure is not None
        raise self._final_error(failure) from failure.cause

    def _final_error(self, failure: _AttemptError) -> PowerError:
        tries = f"{self._retries + 1} attempt{'s' if self._retries else ''} of {self._timeout:g} s"
        port = self._address.port
        if failure.kind == "connect-timeout":
            return PlugUnreachable(
                f"no answer to a TCP connection to port {port} ({tries})",
                hint="check that the plug is powered and on the network; if it is, its "
                "firmware may no longer listen on port 9999 (KLAP, not supported)",
            )
        if failure.kind == "silent":
            return PlugUnsupportedFirmware(
                f"port {port} accepted the connection but never answered ({tries})"
            )
        if failure.kind == "partial":
            return PlugProtocolError(
                f"reply incomplete after {failure.received} bytes ({tries})"
            )
        if isinstance(failure.cause, PlugConnectionClosed):
            return failure.cause
        return PlugUnreachable(f"connection reset by the plug ({tries})")

    async def _attempt(self, data: bytes) -> bytes:
        decoder = FrameDecoder()
        writer: asyncio.StreamWriter | None = None
        done = False
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await self._connect()
                writer.write(data)
                await writer.drain()
                while (payload := decoder.maybe_frame()) is None:
                    chunk = await reader.read(_READ_SIZE)
                    if chunk:
                        decoder.receive_data(chunk)
                    else:
                        decoder.receive_eof()
                done = True
                return payload
        except TimeoutError as exc:
            if writer is None:
                raise _AttemptError("connect-timeout", exc) from exc
            if decoder.buffered == 0:
                raise _AttemptError("silent", exc) from exc
            raise _AttemptError("partial", exc, received=decoder.buffered) from exc
        except PlugConnectionClosed as exc:
            raise _AttemptError("closed", exc) from exc
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            raise _AttemptError("reset", exc) from exc
        finally:
            if writer is not None:
                if done:
                    writer.close()
                else:
                    writer.transport.abort()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        host, port = self._address.host, self._address.port
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise PlugUnreachable(
                f"cannot resolve {host!r}: {exc.strerror}",
                hint="check the host name; a node name needs an --inventory file that lists it",
            ) from exc
        failures: list[OSError] = []
        for family, type_, proto, _, sockaddr in infos:
            sock = socket.socket(family, type_, proto)
            connected = False
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, sockaddr)
                connected = True
            except OSError as exc:
                failures.append(exc)
                continue
            finally:
                if not connected:
                    sock.close()
            return await asyncio.open_connection(sock=sock, limit=_READ_SIZE)
        refused = [exc for exc in failures if isinstance(exc, ConnectionRefusedError)]
        if refused:
            raise PlugUnsupportedFirmware(f"port {port} refused the connection") from refused[0]
        if not failures:
            raise PlugUnreachable(f"{host!r} resolves to no address")
        last = failures[-1]
        raise PlugUnreachable(last.strerror or str(last)) from last
