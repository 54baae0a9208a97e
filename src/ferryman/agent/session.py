"""The source's side of a conversation's opening (connect over mutual TLS, then Hello) and of
its abort.

One module for ``ferryman migrate`` (:class:`ferryman.agent.source.SourceMigration`) and
``ferryman check`` (:mod:`ferryman.agent.checkrun`, :mod:`ferryman.agent.runc_check`), so
the three open a conversation the same way and say the same thing when they cannot.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from ferryman import wire
from ferryman.agent.channel import Channel
from ferryman.agent.hello import exchange_hello, local_hello
from ferryman.agent.steps import timed
from ferryman.criu.client import Criu
from ferryman.errors import FerrymanError, PeerRejected, PeerUnreachable
from ferryman.pki import NodeCredentials, tls

log = logging.getLogger(__name__)
ABORT_TIMEOUT = 10.0
MAX_REASON_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Greeted:
    """An open control connection in GREETED, and both Hellos."""

    ch: Channel
    ours: wire.Hello
    theirs: wire.Hello


async def connect(host: str, port: int, creds: NodeCredentials, timeout: float) -> Channel:
    """A control connection to the agent at ``host:port`` (PeerRejected, PeerUnreachable)."""
    ctx = tls.client_context(creds)
    peer = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), timeout)
    except ssl.SSLCertVerificationError as exc:
        raise PeerRejected(peer, f"the destination's certificate is not valid: "
                           f"{exc.verify_message}",
                           hint="issue the agent's certificate from the same cluster CA, "
                                "with its IP (--ip)") from exc
    except ssl.SSLError as exc:
        raise PeerRejected(peer, f"TLS handshake with {peer} failed: {exc.reason}",
                           hint="both nodes need certificates from the same cluster CA"
                           ) from exc
    except (OSError, TimeoutError) as exc:
        raise PeerUnreachable(peer, f"cannot reach the agent at {peer}: {exc}",
                              hint="start 'ferryman serve' there and check the address"
                              ) from exc
    return Channel(reader, writer, wire.Role.SOURCE, peer)


async def greet(criu: Criu, creds: NodeCredentials, state_dir: Path, *, host: str, port: int,
                timeout: float, steps: dict[str, float] | None = None) -> Greeted:
    """Connect while CRIU describes this node (our Hello), then exchange Hellos.

    The connection is closed again if the Hello exchange fails. ``steps`` gets the timings
    of ``hello_facts``, ``connect`` and ``hello_exchange`` (agent/steps.py).
    """
    steps = {} if steps is None else steps

    async def ours_timed() -> wire.Hello:
        with timed(steps, "hello_facts"):
            return await local_hello(criu, creds.name, state_dir)

    ours_task = asyncio.ensure_future(ours_timed())
    try:
        with timed(steps, "connect"):
            ch = await connect(host, port, creds, timeout)
    finally:
        if not ours_task.done():
            await asyncio.wait({ours_task})
    try:
        ours = ours_task.result()
        with timed(steps, "hello_exchange"):
            theirs = await exchange_hello(ch, ours, timeout)
    except BaseException:
        await ch.close()
        raise
    return Greeted(ch, ours, theirs)


async def abort(ch: Channel, reason: str, timeout: float = ABORT_TIMEOUT) -> None:
    """Abort the migration and wait for the destination's Aborted (it dropped what it had);
    a destination that does not acknowledge is logged, not raised: the caller is already
    failing for ``reason``. The caller checks that the conversation is in a state where an
    Abort may be sent (``wire.ABORTABLE_STATES``, or not final)."""
    try:
        await ch.send(wire.Abort(reason=reason[:MAX_REASON_CHARS]))
        await ch.expect((wire.Aborted,), timeout)
    except FerrymanError as err:
        log.info("destination did not acknowledge the abort: %s", err)
