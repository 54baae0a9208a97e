"""Errors of smart-plug power control, a branch of ferryman's one exception tree.

    FerrymanError
    └── PowerError                     (plug)                        exit 20
        ├── PlugUnreachable            (reason) no route, no answer    exit 21
        ├── PlugDeviceError            (err_code, module, method)      exit 22
        ├── PlugProtocolError          the plug broke the framing/JSON exit 23
        │   └── PlugConnectionClosed   (received, expected) cut short
        ├── PlugUnsupportedFirmware    (reason) port 9999 refused/silent (KLAP) exit 24
        ├── PlugStateNotChanged        (wanted_on) the relay ignored us exit 25
        └── PlugInventoryError         (path) inventory file unusable   exit 26

``plug`` is the plug's address ("host:port") when known. The pure codec raises these
without it; the client adds it at the I/O boundary (see :func:`about_plug`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ferryman.errors import FerrymanError

#: Meaning of the ``err_code`` values that the firmware documents.
ERR_CODE_MEANINGS: dict[int, str] = {
    -1: "module not supported",
    -2: "member not supported",
    -3: "invalid argument",
}


class PowerError(FerrymanError):
    """Root of smart-plug errors."""

    exit_code = 20

    def __init__(self, message: str, *, plug: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.plug = plug

    def one_line(self) -> str:
        line = super().one_line()
        return f"plug {self.plug}: {line}" if self.plug else line


class PlugUnreachable(PowerError):
    """No connection: the name does not resolve, there is no route, or nobody answers."""

    exit_code = 21

    def __init__(self, reason: str, *, plug: str | None = None, hint: str | None = None) -> None:
        super().__init__(
            f"unreachable: {reason}",
            plug=plug,
            hint=hint or "check that the plug is powered and on the network, and its address",
        )
        self.reason = reason


class PlugDeviceError(PowerError):
    """The plug answered with a non-zero ``err_code``."""

    exit_code = 22

    def __init__(
        self,
        err_code: int,
        message: str,
        *,
        module: str,
        method: str | None = None,
        plug: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = f"{module}.{method}" if method else module
        if hint is None and err_code in (-1, -2):
            hint = "this plug model or firmware does not support that command"
        elif hint is None and err_code == -3:
            hint = "check the command's arguments"
        super().__init__(
            f"{where} failed with err_code {err_code} ({message})", plug=plug, hint=hint
        )
        self.err_code = err_code
        self.device_message = message
        self.module = module
        self.method = method


class PlugProtocolError(PowerError):
    """The plug's reply broke the framing or is not the JSON the protocol prescribes."""

    exit_code = 23

    def __init__(self, detail: str, *, plug: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"protocol error: {detail}", plug=plug, hint=hint)
        self.detail = detail


class PlugConnectionClosed(PlugProtocolError):
    """The connection ended before a whole reply arrived. ``expected`` is None before a header."""

    def __init__(self, received: int, expected: int | None, *, plug: str | None = None) -> None:
        if expected is None:
            detail = f"connection closed before a reply ({received} header bytes received)"
        else:
            detail = f"connection closed mid-reply ({received} of {expected} bytes received)"
        super().__init__(detail, plug=plug)
        self.received = received
        self.expected = expected


class PlugUnsupportedFirmware(PowerError):
    """Port 9999 refuses connections or never answers: firmware that speaks only KLAP."""

    exit_code = 24

    def __init__(self, reason: str, *, plug: str | None = None) -> None:
        super().__init__(
            f"{reason}; this firmware is not supported",
            plug=plug,
            hint="newer TP-Link firmware speaks only the encrypted HTTP protocol (KLAP) instead "
            "of port 9999, which ferryman does not support; if this is not a TP-Link plug, "
            "check the address",
        )
        self.reason = reason


class PlugStateNotChanged(PowerError):
    """After set_relay_state the plug still reports the old state."""

    exit_code = 25

    def __init__(self, wanted_on: bool, *, plug: str | None = None) -> None:
        wanted = "ON" if wanted_on else "OFF"
        actual = "OFF" if wanted_on else "ON"
        super().__init__(
            f"relay did not switch {wanted}: the plug still reports {actual}",
            plug=plug,
            hint="the plug may be in a schedule or away mode, or faulty; check it with the app",
        )
        self.wanted_on = wanted_on


class PlugInventoryError(PowerError):
    """The inventory file is missing, is not TOML, or has an entry that is not an address."""

    exit_code = 26

    def __init__(self, path: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{path}: {message}",
            hint=hint or 'write one line per node: NODE = "host" or NODE = "host:port"',
        )
        self.path = path


@contextmanager
def about_plug(plug: str) -> Iterator[None]:
    """Add the plug's address to any :class:`PowerError` raised without one inside the block."""
    try:
        yield
    except PowerError as exc:
        if exc.plug is None:
            exc.plug = plug
        raise
