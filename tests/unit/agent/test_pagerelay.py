"""The page relay's frames: LZ4 when it shrinks, raw when not, checked on the way in."""

from __future__ import annotations

import random

import pytest

from ferryman.agent.pagerelay import END, HEADER, MAX_RAW, RelayError, check_header, pack, unpack


def _split(frame: bytes) -> tuple[int, int, bytes]:
    raw_len, wire_len = HEADER.unpack_from(frame)
    return raw_len, wire_len, frame[HEADER.size:]


def test_a_compressible_chunk_travels_as_an_lz4_block() -> None:
    chunk = b"page" * 4096
    raw_len, wire_len, payload = _split(pack(chunk))
    assert (raw_len, wire_len) == (len(chunk), len(payload))
    assert wire_len < len(chunk) // 10
    assert unpack(raw_len, payload) == chunk


def test_an_incompressible_chunk_travels_raw() -> None:
    chunk = random.Random(1).randbytes(65536)
    raw_len, wire_len, payload = _split(pack(chunk))
    assert raw_len == wire_len == len(chunk)
    assert payload == chunk
    assert unpack(raw_len, payload) == chunk
    assert _split(pack(b"page" * 4096, compress=False))[1] == 16384  # off: always raw


def test_end_and_bad_frames() -> None:
    assert HEADER.unpack(END) == (0, 0)
    with pytest.raises(RelayError, match="bad frame header"):
        check_header(MAX_RAW + 1, 10)
    with pytest.raises(RelayError, match="bad frame header"):
        check_header(100, 101)
    with pytest.raises(RelayError, match="does not decompress"):
        unpack(100, b"\xff" * 10)
