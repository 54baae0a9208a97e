"""Frames the fuzzer sends: a control message as an editable header and body, and back to bytes.

A valid message is encoded by the wire's own encoder, then split into its JSON header (a tuple
of key/value pairs, so that a key can repeat) and its body. The fuzzer edits those and packs
them again with no checks at all. A value of type :class:`RawJson` goes into the header as it
is: nesting deeper than any encoder allows, numbers no parser takes, bare NaN.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from ferryman import wire

_PREFIX = struct.Struct(">IH")  # N (everything after itself), then the header's length


class RawJson(str):
    """JSON text that goes into a header verbatim."""

    __slots__ = ()


@dataclass(frozen=True)
class Frame:
    """One frame to send: header pairs (``type`` first), body, and what was done to it."""

    pairs: tuple[tuple[str, object], ...]
    body: bytes = field(default=b"", repr=False)
    ascii_only: bool = False  # \\u-escape non-ASCII: lone surrogates become valid JSON
    note: str = ""  # the mutations, for the report

    @classmethod
    def of(cls, msg: wire.Message) -> Frame:
        data = wire.encode(msg)
        _, head_len = _PREFIX.unpack_from(data)
        head_end = _PREFIX.size + head_len
        header = json.loads(data[_PREFIX.size:head_end])
        return cls(tuple(header.items()), data[head_end:])

    @property
    def type_name(self) -> str:
        for key, value in self.pairs:
            if key == "type":
                return value if isinstance(value, str) else repr(value)[:20]
        return "?"

    def label(self) -> str:
        return f"{self.type_name}{{{self.note}}}" if self.note else self.type_name

    def field_names(self) -> list[str]:
        return [k for k, _ in self.pairs if k != "type"]

    def to_bytes(self) -> bytes:
        items = ",".join(f"{_dump(k, self.ascii_only)}:{_dump(v, self.ascii_only)}"
                         for k, v in self.pairs)
        head = ("{" + items + "}").encode("utf-8", "surrogatepass")
        size = 2 + len(head) + len(self.body)
        return _PREFIX.pack(size, len(head) & 0xFFFF) + head + self.body


def _dump(value: object, ascii_only: bool) -> str:
    if isinstance(value, RawJson):
        return str(value)
    return json.dumps(value, ensure_ascii=ascii_only)


def prefix(n: int, head_len: int) -> bytes:
    """A frame's first six bytes, saying whatever sizes the caller wants."""
    return _PREFIX.pack(n & 0xFFFFFFFF, head_len & 0xFFFF)
