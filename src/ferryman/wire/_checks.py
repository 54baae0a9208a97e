"""Field checks shared by the message constructors.

Every check raises :class:`~ferryman.errors.LocalProtocolError`: a message that fails one was
built by our own code. The decoder re-raises it as ``RemoteProtocolError`` when the message
came off the wire. Types are checked exactly (``type(x) is int``), so ``True`` is not an int
and an ``IntEnum`` member is not either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from ferryman.errors import LocalProtocolError

MAX_INT = 2**63 - 1
"""Largest integer any field may hold: every count, size and time fits a signed 64-bit int."""

MAX_MAPPING_ITEMS = 256
"""Most entries in a ``features`` or ``stats`` mapping."""

MAX_FILE_NAME_BYTES = 255
"""Longest image file name, in UTF-8 bytes (Linux ``NAME_MAX``)."""

KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Mapping keys (feature and statistic names): short identifiers, never escaped in JSON."""


def _fail(owner: str, name: str, why: str) -> LocalProtocolError:
    return LocalProtocolError(f"{owner}.{name} {why}")


def check_int(owner: str, name: str, value: object, *, lo: int = 0, hi: int = MAX_INT) -> int:
    """``value`` is an int (not a bool) in ``[lo, hi]``; returns it."""
    if type(value) is not int:
        raise _fail(owner, name, f"must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise _fail(owner, name, f"must be in [{lo}, {hi}], got {value}")
    return value


def check_bool(owner: str, name: str, value: object) -> bool:
    """``value`` is exactly ``True`` or ``False``; returns it."""
    if type(value) is not bool:
        raise _fail(owner, name, f"must be a bool, not {type(value).__name__}")
    return value


def check_str(
    owner: str,
    name: str,
    value: object,
    *,
    max_chars: int,
    min_chars: int = 0,
    pattern: re.Pattern[str] | None = None,
) -> None:
    """``value`` is a str of ``min_chars..max_chars`` characters that encodes as UTF-8."""
    if type(value) is not str:
        raise _fail(owner, name, f"must be a str, not {type(value).__name__}")
    if not min_chars <= len(value) <= max_chars:
        raise _fail(owner, name, f"must have {min_chars}..{max_chars} characters")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise _fail(owner, name, f"must match {pattern.pattern!r}, got {value!r}")
    utf8_bytes(owner, name, value)


def check_text_bytes(owner: str, name: str, value: object, *, max_bytes: int) -> None:
    """``value`` is a str whose UTF-8 encoding is at most ``max_bytes`` long."""
    if type(value) is not str:
        raise _fail(owner, name, f"must be a str, not {type(value).__name__}")
    if len(value) > max_bytes or len(utf8_bytes(owner, name, value)) > max_bytes:
        raise _fail(owner, name, f"must be at most {max_bytes} bytes of UTF-8")


def utf8_bytes(owner: str, name: str, value: str) -> bytes:
    """``value`` as UTF-8; lone surrogates cannot cross the wire and are refused."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _fail(owner, name, "is not encodable as UTF-8") from exc


def check_bytes(owner: str, name: str, value: object, *, max_len: int) -> None:
    """``value`` is exactly ``bytes`` (not bytearray or memoryview) of at most ``max_len``."""
    if type(value) is not bytes:
        raise _fail(owner, name, f"must be bytes, not {type(value).__name__}")
    if len(value) > max_len:
        raise _fail(owner, name, f"must be at most {max_len} bytes, got {len(value)}")


def check_file_name(owner: str, name: str, value: object) -> None:
    """``value`` names one file inside an image directory and nothing else.

    Non-empty, at most 255 bytes of UTF-8, no ``/`` and no NUL, not ``.`` or ``..``: joined to
    the image directory it can only ever name a direct child of that directory.
    """
    if type(value) is not str:
        raise _fail(owner, name, f"must be a str, not {type(value).__name__}")
    if value in ("", ".", ".."):
        raise _fail(owner, name, f"is not a file name: {value!r}")
    if "/" in value or "\0" in value:
        raise _fail(owner, name, f"must not contain '/' or NUL: {value!r}")
    if len(utf8_bytes(owner, name, value)) > MAX_FILE_NAME_BYTES:
        raise _fail(owner, name, f"must be at most {MAX_FILE_NAME_BYTES} bytes of UTF-8")


def _items(owner: str, name: str, value: object) -> list[tuple[str, object]]:
    if not isinstance(value, Mapping):
        raise _fail(owner, name, f"must be a mapping, not {type(value).__name__}")
    if len(value) > MAX_MAPPING_ITEMS:
        raise _fail(owner, name, f"must have at most {MAX_MAPPING_ITEMS} entries")
    items: list[tuple[str, object]] = []
    for key, item in value.items():
        check_str(owner, f"{name} key", key, max_chars=64, pattern=KEY_RE)
        items.append((key, item))
    return items


def bool_mapping(owner: str, name: str, value: object) -> Mapping[str, bool]:
    """A read-only copy of a ``str -> bool`` mapping (keys match :data:`KEY_RE`, at most
    :data:`MAX_MAPPING_ITEMS` entries)."""
    items = _items(owner, name, value)
    return MappingProxyType({k: check_bool(owner, f"{name}[{k!r}]", v) for k, v in items})


def int_mapping(owner: str, name: str, value: object) -> Mapping[str, int]:
    """A read-only copy of a ``str -> non-negative int`` mapping (keys match :data:`KEY_RE`,
    at most :data:`MAX_MAPPING_ITEMS` entries)."""
    items = _items(owner, name, value)
    return MappingProxyType({k: check_int(owner, f"{name}[{k!r}]", v) for k, v in items})
