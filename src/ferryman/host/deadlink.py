"""The one bound on a dead link (cable cut, veth down, every packet dropped) for ferryman's
own TCP connections: the control channel (agent/channel.py), the sync listener's connections
(fs/server.py) and the rsync tunnel (fs/tunnel.py, which gets the numbers on its command
line: it runs with the standard library only). CRIU's page sockets get the same 5 s through
``FERRYMAN_PAGE_TIMEOUT_MS`` (criu/pacing.py).

The kernel reports a dead link within about KEEPIDLE + KEEPINTVL * KEEPCNT seconds while a
connection waits for data (keepalive), or USER_TIMEOUT_MS for data the peer does not
acknowledge (which also ends a connect's SYN retries); the socket's next read or write then
fails with ETIMEDOUT, instead of waiting for ever or for the kernel's retransmissions
(about 15 minutes).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

KEEPIDLE, KEEPINTVL, KEEPCNT, USER_TIMEOUT_MS = 2, 1, 3, 5000


@dataclass(frozen=True, slots=True)
class Bound:
    """Keepalive (first probe after ``idle`` s, then every ``interval`` s, ``count`` of
    them) and TCP_USER_TIMEOUT (``user_timeout_ms``)."""

    idle: int
    interval: int
    count: int
    user_timeout_ms: int


CONTROL = Bound(KEEPIDLE, KEEPINTVL, KEEPCNT, USER_TIMEOUT_MS)


def bound(sock: socket.socket, limits: Bound = CONTROL) -> None:
    """Keepalive and a user timeout on ``sock`` (a TCP socket, connected or not yet)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, limits.idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, limits.interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, limits.count)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, limits.user_timeout_ms)


def tunnel_argument() -> str:
    """The bound as fs/tunnel.py's ``--dead-link`` takes it: ``IDLE,INTVL,CNT,USER_MS``."""
    return f"{KEEPIDLE},{KEEPINTVL},{KEEPCNT},{USER_TIMEOUT_MS}"
