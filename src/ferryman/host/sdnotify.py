"""systemd's readiness protocol (``sd_notify``): state lines in a datagram to $NOTIFY_SOCKET.

A ``Type=notify`` unit gets NOTIFY_SOCKET, the path of a unix datagram socket (``@name`` for
an abstract one). The service sends ``READY=1`` once it serves, ``STOPPING=1`` when it begins
to stop, and may add ``STATUS=...`` for ``systemctl status``. Outside systemd the variable is
unset and :class:`Notifier` does nothing. The address is parsed by a pure function; only
:meth:`Notifier.send` touches a socket.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import MutableMapping
from dataclasses import dataclass

log = logging.getLogger(__name__)
ENV = "NOTIFY_SOCKET"


def socket_address(value: str | None) -> str | None:
    """The ``AF_UNIX`` address NOTIFY_SOCKET names (``@x`` -> abstract ``\\0x``), or None when
    it is unset, empty or of a kind we do not speak (e.g. ``vsock:``)."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def message(*, status: str | None = None, **states: int) -> bytes:
    """``READY=1\\nSTATUS=...``: one ``KEY=VALUE`` line per state; a status stays one line."""
    lines = [f"{key}={value}" for key, value in states.items()]
    if status is not None:
        lines.append("STATUS=" + " ".join(status.split()))
    return "\n".join(lines).encode()


@dataclass(frozen=True, slots=True)
class Notifier:
    """Where to tell systemd how the service is doing; ``address`` None: not under systemd."""

    address: str | None

    @classmethod
    def take_from(cls, env: MutableMapping[str, str]) -> Notifier:
        """The notifier ``env`` names, removing NOTIFY_SOCKET from it, so that what the
        service runs (criu, rsync, restored workloads) does not inherit it."""
        value = env.pop(ENV, None)
        address = socket_address(value)
        if value and address is None:
            log.warning("ignoring %s=%r: not a unix socket path", ENV, value)
        return cls(address)

    def send(self, payload: bytes) -> bool:
        """Send one notification; False (logged) when it cannot be delivered."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(payload, self.address)
        except OSError as exc:
            log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"),
                        exc.strerror or exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(message(READY=1, status=status))

    def stopping(self, status: str) -> bool:
        return self.send(message(STOPPING=1, status=status))
