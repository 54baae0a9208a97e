"""A plug's network address: ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""

from __future__ import annotations

from dataclasses import dataclass

#: The port of the TP-Link smart-home protocol, over TCP and UDP alike.
DEFAULT_PORT = 9999


@dataclass(frozen=True, slots=True)
class PlugAddress:
    host: str
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        if not self.host or any(ch.isspace() for ch in self.host) or "/" in self.host:
            raise ValueError(f"not a host name or address: {self.host!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range 1-65535: {self.port}")

    @classmethod
    def parse(cls, text: str, *, default_port: int = DEFAULT_PORT) -> PlugAddress:
        """Parse ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``. Raises ValueError."""
        text = text.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep:
                raise ValueError(f"missing ']' in {text!r}")
            if rest and not rest.startswith(":"):
                raise ValueError(f"junk after ']' in {text!r}")
            return cls(host, _parse_port(rest[1:], text) if rest else default_port)
        if text.count(":") == 1:
            host, _, port = text.partition(":")
            return cls(host, _parse_port(port, text))
        return cls(text, default_port)  # a name, IPv4, or an IPv6 address without a port

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit():
        raise ValueError(f"not a port number in {whole!r}: {text!r}")
    return int(text)
