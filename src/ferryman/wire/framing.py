"""Frames: how one control message becomes bytes on the wire, and back.

A frame is::

    +-------------+-------------+----------------------+-------------------+
    | N: u32 (BE) | H: u16 (BE) | header: H bytes JSON | body: N-2-H bytes |
    +-------------+-------------+----------------------+-------------------+

``N`` counts everything after itself and is at most ``max_frame`` (8 MiB by default); a
larger ``N`` is refused as soon as its four bytes arrive, before any of the frame is waited
for. The header is a UTF-8 JSON object ``{"type": "<MessageName>", <field>: <value>, ...}``
naming every field of the message exactly once.

Large fields travel in the body, not in the JSON: ``Hello.cpuinfo`` and ``FileChunk.data``
(bytes) and ``Failed.log_tail`` (UTF-8 text). In the header such a field's value is the length
of its slice of the body; the slices follow each other in field order and cover the body
exactly. Example: ``FileChunk("pages-1.img", 0, <4096 bytes>)`` is the header
``{"type":"FileChunk","name":"pages-1.img","offset":0,"data":4096}`` and a 4096-byte body.

Decoding is strict and never evaluates anything: unknown types, missing, extra or duplicate
keys, floats, NaN, wrong JSON types, bad UTF-8, slices that overrun or do not cover the body,
and ``H > N-2`` all raise :class:`~ferryman.errors.RemoteProtocolError`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Final, cast

from ferryman.errors import LocalProtocolError, RemoteProtocolError
from ferryman.wire.messages import MESSAGE_TYPES, Failed, FileChunk, Hello, LinkTest, Message

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["BODY_FIELDS", "DEFAULT_MAX_FRAME", "FrameDecoder", "encode"]

DEFAULT_MAX_FRAME: Final = 8 << 20
"""Largest frame (``N``) accepted or produced unless the caller says otherwise."""

MAX_HEADER: Final = 0xFFFF
BODY_FIELDS: Final[Mapping[type[Message], tuple[str, ...]]] = {
    Hello: ("cpuinfo",),
    FileChunk: ("data",),
    LinkTest: ("payload",),
    Failed: ("log_tail",),
}
"""The fields each message carries in the frame body, in body order."""

_TEXT_BODY_FIELDS: Final = frozenset({(Failed, "log_tail")})
_PREFIX = struct.Struct(">I")
_HEADER_LEN = struct.Struct(">H")
_FIELD_NAMES: Final[Mapping[type[Message], tuple[str, ...]]] = {
    cls: tuple(f.name for f in fields(cast("type[DataclassInstance]", cls)))
    for cls in MESSAGE_TYPES.values()
}


def encode(msg: Message, *, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """The frame carrying ``msg``. Raises LocalProtocolError if it would exceed ``max_frame``."""
    cls = type(msg)
    if MESSAGE_TYPES.get(cls.__name__) is not cls:
        raise LocalProtocolError(f"not a control message: {cls.__name__}")
    body_names = BODY_FIELDS.get(cls, ())
    header: dict[str, object] = {"type": cls.__name__}
    parts: list[bytes] = []
    for name in _FIELD_NAMES[cls]:
        value = getattr(msg, name)
        if name in body_names:
            raw = value.encode("utf-8") if isinstance(value, str) else value
            header[name] = len(raw)
            parts.append(raw)
        elif isinstance(value, Mapping):
            header[name] = dict(value)
        else:
            header[name] = value
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    head_bytes = head.encode("utf-8")
    if len(head_bytes) > MAX_HEADER:
        raise LocalProtocolError(f"{cls.__name__} header is {len(head_bytes)} bytes, too long")
    size = _HEADER_LEN.size + len(head_bytes) + sum(len(p) for p in parts)
    if size > max_frame:
        raise LocalProtocolError(f"{cls.__name__} frame is {size} bytes, over {max_frame}")
    return b"".join([_PREFIX.pack(size), _HEADER_LEN.pack(len(head_bytes)), head_bytes, *parts])


class FrameDecoder:
    """Incremental decoder: feed bytes with :meth:`receive_data`, take messages out with
    :meth:`maybe_message` (``None`` while the next frame is incomplete).

    Once it has raised RemoteProtocolError it stays broken and raises again.
    """

    __slots__ = ("_broken", "_buffer", "_max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if type(max_frame) is not int or not _HEADER_LEN.size < max_frame <= 0xFFFFFFFF:
            raise ValueError(f"max_frame must be an int in (2, 2**32), got {max_frame!r}")
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._broken: str | None = None

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def maybe_message(self) -> Message | None:
        """The next complete message, or ``None`` if more bytes are needed."""
        if self._broken is not None:
            raise RemoteProtocolError(f"frame stream already broken: {self._broken}")
        try:
            return self._maybe_message()
        except RemoteProtocolError as exc:
            self._broken = exc.message
            raise

    def _maybe_message(self) -> Message | None:
        buf = self._buffer
        if len(buf) < _PREFIX.size:
            return None
        (size,) = _PREFIX.unpack_from(buf)
        if size > self._max_frame:
            raise RemoteProtocolError(f"peer announced a {size}-byte frame, over {self._max_frame}")
        if size < _HEADER_LEN.size:
            raise RemoteProtocolError(f"peer announced a {size}-byte frame, too short")
        end = _PREFIX.size + size
        if len(buf) < end:
            return None
        payload = bytes(buf[_PREFIX.size : end])
        del buf[:end]
        return decode_payload(payload)


def decode_payload(payload: bytes) -> Message:
    """The message in one frame's payload (everything after ``N``)."""
    (head_len,) = _HEADER_LEN.unpack_from(payload)
    if head_len > len(payload) - _HEADER_LEN.size:
        raise RemoteProtocolError(f"header length {head_len} overruns the frame")
    head_end = _HEADER_LEN.size + head_len
    header = _parse_json(payload[_HEADER_LEN.size : head_end])
    if not isinstance(header, dict):
        raise RemoteProtocolError("frame header is not a JSON object")
    type_name = header.pop("type", None)
    if not isinstance(type_name, str):
        raise RemoteProtocolError("frame header has no string 'type'")
    cls = MESSAGE_TYPES.get(type_name)
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {type_name[:64]!r}")
    expected = _FIELD_NAMES[cls]
    if header.keys() != set(expected):
        missing = sorted(set(expected) - header.keys())
        extra = sorted(header.keys() - set(expected))
        raise RemoteProtocolError(f"{type_name}: missing fields {missing}, extra fields {extra}")
    _fill_body_fields(cls, header, memoryview(payload)[head_end:])
    try:
        return cls(**header)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"invalid {exc.message}") from exc


def _fill_body_fields(cls: type[Message], header: dict[str, object], body: memoryview) -> None:
    pos = 0
    for name in BODY_FIELDS.get(cls, ()):
        length = header[name]
        if type(length) is not int or not 0 <= length <= len(body) - pos:
            raise RemoteProtocolError(f"{cls.__name__}.{name}: bad body slice length {length!r}")
        raw = bytes(body[pos : pos + length])
        pos += length
        if (cls, name) in _TEXT_BODY_FIELDS:
            try:
                header[name] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RemoteProtocolError(f"{cls.__name__}.{name} is not UTF-8") from exc
        else:
            header[name] = raw
    if pos != len(body):
        raise RemoteProtocolError(f"{cls.__name__}: {len(body) - pos} bytes of trailing garbage")


class _MalformedJsonError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise _MalformedJsonError(f"duplicate key {key[:64]!r}")
        obj[key] = value
    return obj


def _no_float(text: str) -> object:
    raise _MalformedJsonError(f"floats are not allowed: {text[:32]}")


def _no_constant(text: str) -> object:
    raise _MalformedJsonError(f"{text} is not allowed")


def _parse_json(raw: bytes) -> object:
    try:
        return json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_unique_keys,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RemoteProtocolError(f"malformed frame header: {exc}") from exc
