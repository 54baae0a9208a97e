"""Frames: round trips, incremental decoding and strict rejection of malformed input."""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.errors import LocalProtocolError, RemoteProtocolError
from ferryman.wire import (
    DEFAULT_MAX_FRAME,
    MESSAGE_TYPES,
    Abort,
    Commit,
    Error,
    Failed,
    FileChunk,
    FrameDecoder,
    Hello,
    Message,
    Refused,
    Restored,
    encode,
)
from ferryman.wire._checks import MAX_MAPPING_ITEMS
from ferryman.wire.framing import BODY_FIELDS
from ferryman.wire.limits import MAX_CHUNK_BYTES, MAX_LOG_TAIL_BYTES, MAX_TEXT_CHARS

from .helpers import MESSAGE_STRATEGIES, SAMPLES, any_message


def decode_all(data: bytes, *, max_frame: int = DEFAULT_MAX_FRAME) -> list[Message]:
    decoder = FrameDecoder(max_frame)
    decoder.receive_data(data)
    out = []
    while (msg := decoder.maybe_message()) is not None:
        out.append(msg)
    assert decoder.buffered == 0
    return out


def frame(header: bytes, body: bytes = b"", *, h: int | None = None, n: int | None = None) -> bytes:
    h = len(header) if h is None else h
    n = 2 + len(header) + len(body) if n is None else n
    return struct.pack(">IH", n, h) + header + body


def raw_header(msg: Message) -> dict[str, object]:
    data = encode(msg)
    (h,) = struct.unpack_from(">H", data, 4)
    header: dict[str, object] = json.loads(data[6 : 6 + h])
    return header


def body_of(msg: Message) -> bytes:
    data = encode(msg)
    (h,) = struct.unpack_from(">H", data, 4)
    return data[6 + h :]


def rejects(data: bytes, match: str | None = None) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        decode_all(data)


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("cls", MESSAGE_TYPES.values(), ids=lambda c: c.__name__)
@given(data=st.data())
def test_every_message_round_trips(cls: type[Message], data: st.DataObject) -> None:
    msg = data.draw(MESSAGE_STRATEGIES[cls])
    assert decode_all(encode(msg)) == [msg]


@given(msgs=st.lists(any_message, max_size=8), cuts=st.lists(st.integers(0, 10_000)))
def test_any_split_gives_the_same_messages(msgs: list[Message], cuts: list[int]) -> None:
    stream = b"".join(encode(m) for m in msgs)
    decoder = FrameDecoder()
    out: list[Message] = []
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(bounds):
        decoder.receive_data(stream[start:end])
        while (msg := decoder.maybe_message()) is not None:
            out.append(msg)
    assert out == msgs


def test_byte_at_a_time() -> None:
    msgs = list(SAMPLES.values())
    stream = b"".join(encode(m) for m in msgs)
    decoder = FrameDecoder()
    out: list[Message] = []
    for i in range(len(stream)):
        decoder.receive_data(stream[i : i + 1])
        if (msg := decoder.maybe_message()) is not None:
            out.append(msg)
    assert out == msgs


def test_largest_messages_fit() -> None:
    """Worst-case JSON escaping of every bounded field still fits the 64 KiB header."""
    nasty = "\x01" * MAX_TEXT_CHARS
    features = {f"{i:064d}": True for i in range(MAX_MAPPING_ITEMS)}
    stats = {f"{i:064d}": 2**63 - 1 for i in range(MAX_MAPPING_ITEMS)}
    for msg in [
        Error("x" * 64, nasty),
        Abort(nasty),
        Refused("x" * 64, nasty),
        Failed("x" * 64, nasty, "\x01" * MAX_LOG_TAIL_BYTES),
        Hello(0xFFFF, "\x01" * 255, "\x01" * 64, features, b"\xff" * (1 << 20), 2**63 - 1, 0),
        Restored(1, stats),
        FileChunk("\x01" * 255, 2**63 - 1, b"\0" * MAX_CHUNK_BYTES),
    ]:
        assert decode_all(encode(msg)) == [msg]


def test_body_fields_are_the_bytes_fields_and_log_tail() -> None:
    for cls, msg in SAMPLES.items():
        in_body = {f.name for f in dataclasses.fields(msg)  # type: ignore[arg-type]
                   if isinstance(getattr(msg, f.name), bytes)}
        if cls is Failed:
            in_body.add("log_tail")
        assert set(BODY_FIELDS.get(cls, ())) == in_body


def test_layout() -> None:
    data = encode(FileChunk("a", 7, b"xyz"))
    header = b'{"type":"FileChunk","name":"a","offset":7,"data":3}'
    assert data == struct.pack(">IH", 2 + len(header) + 3, len(header)) + header + b"xyz"


# ----------------------------------------------------------------------------- size limits

def test_oversized_frame_is_refused_from_its_length_alone() -> None:
    decoder = FrameDecoder(1024)
    decoder.receive_data(struct.pack(">I", 1025))
    with pytest.raises(RemoteProtocolError, match="1025"):
        decoder.maybe_message()
    with pytest.raises(RemoteProtocolError):  # and stays broken
        decoder.maybe_message()


def test_default_limit_is_8_mib() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(struct.pack(">I", 8 << 20))
    assert decoder.maybe_message() is None
    decoder = FrameDecoder()
    decoder.receive_data(struct.pack(">I", (8 << 20) + 1) + b"x" * 100)
    with pytest.raises(RemoteProtocolError):
        decoder.maybe_message()


def test_encode_refuses_frames_over_the_limit() -> None:
    msg = FileChunk("a", 0, b"\0" * 2000)
    with pytest.raises(LocalProtocolError, match="over 1024"):
        encode(msg, max_frame=1024)
    assert len(encode(msg, max_frame=len(encode(msg)) - 4)) == len(encode(msg))


@pytest.mark.parametrize("n", [0, 1])
def test_frames_too_short_for_a_header_length(n: int) -> None:
    rejects(struct.pack(">I", n) + b"\0\0", "too short")


def test_truncated_frames_wait() -> None:
    data = encode(SAMPLES[Hello])
    for cut in range(len(data)):
        decoder = FrameDecoder()
        decoder.receive_data(data[:cut])
        assert decoder.maybe_message() is None
        decoder.receive_data(data[cut:])
        assert decoder.maybe_message() == SAMPLES[Hello]


def test_bad_max_frame() -> None:
    for bad in [2, 2**32, True, "8"]:
        with pytest.raises(ValueError, match="max_frame"):
            FrameDecoder(bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- strictness

def test_header_length_overrunning_the_frame() -> None:
    header = b'{"type":"Commit"}'
    rejects(frame(header, h=len(header) + 1), "overruns")
    rejects(struct.pack(">IH", 3, 2) + b"{}"[:1], "overruns")


def test_trailing_garbage() -> None:
    rejects(frame(b'{"type":"Commit"}', b"x"), "trailing garbage")
    rejects(frame(b'{"type":"Commit"} x'), "malformed")
    chunk = FileChunk("a", 0, b"abc")
    rejects(frame(json.dumps(raw_header(chunk)).encode(), b"abcd"), "trailing garbage")


@pytest.mark.parametrize(
    "header",
    [
        b'{"type":"Bogus"}',
        b'{"type":"message"}',
        b'{"type":"__class__"}',
        b'{"type":1}',
        b'{"type":null}',
        b'{"kind":"Commit"}',
        b'["Commit"]',
        b'"Commit"',
        b"",
        b"\xff",
        b'{"type":"Commit","type":"Commit"}',
        b'{"type":"Abort","reason":NaN}',
        b'{"type":"Ready","page_server_port":1.0}',
        b'{"type":"Ready","page_server_port":1e3}',
        b'{"type":"Ready","page_server_port":true}',
        b'{"type":"Ready","page_server_port":"1"}',
        b'{"type":"Ready","page_server_port":null}',
        b'{"type":"Ready","page_server_port":-1}',
        b'{"type":"Ready","page_server_port":' + b"9" * 5000 + b"}",
        b'{"type":"Ready"}',
        b'{"type":"Ready","page_server_port":1,"extra":2}',
        b'{"type":"Abort","reason":["x"]}',
        b'{"type":"Abort","reason":{"x":1}}',
        b'{"type":"Committed","pid":0}',
        b'{"type":"Restored","pid":1,"stats":[]}',
        b'{"type":"Restored","pid":1,"stats":{"x":true}}',
        b'{"type":"Restored","pid":1,"stats":{"x":1,"x":2}}',
        b'{"type":"Commit","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'\xef\xbb\xbf{"type":"Commit"}',
        b'{"type":"Abort","reason":"\xed\xa0\x80"}',
        b'{"type":"Abort","reason":"\\ud800"}',
    ],
)
def test_malformed_headers(header: bytes) -> None:
    rejects(frame(header))


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "a\0b", "x" * 256])
def test_bad_file_names_from_the_peer(name: str) -> None:
    header = json.dumps({"type": "FileChunk", "name": name, "offset": 0, "data": 0}).encode()
    rejects(frame(header), "name")
    end = json.dumps({"type": "FileEnd", "name": name, "size": 0, "sha256": "0" * 64})
    rejects(frame(end.encode()), "name")


@pytest.mark.parametrize("length", [-1, 4, True, "3", None, 1.0])
def test_body_slice_lengths(length: object) -> None:
    header = json.dumps({"type": "FileChunk", "name": "a", "offset": 0, "data": length})
    rejects(frame(header.encode(), b"abc"))


def test_bytes_field_cannot_hide_in_the_header() -> None:
    header = {"type": "FileChunk", "name": "a", "offset": 0, "data": "abc"}
    rejects(frame(json.dumps(header).encode()))


def test_log_tail_must_be_utf8() -> None:
    header = raw_header(Failed("x", "y", ""))
    header["log_tail"] = 2
    rejects(frame(json.dumps(header).encode(), b"\xc3("), "UTF-8")


def test_non_messages_cannot_be_encoded() -> None:
    class Sneaky(Commit):
        __slots__ = ()

    with pytest.raises(LocalProtocolError):
        encode(Sneaky())
    with pytest.raises(LocalProtocolError):
        encode(Message())
    assert body_of(Commit()) == b""


def test_no_field_is_called_type() -> None:
    for msg in SAMPLES.values():
        assert "type" not in {f.name for f in dataclasses.fields(msg)}  # type: ignore[arg-type]
