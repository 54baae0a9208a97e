"""The page relay's frames: LZ4 when it shrinks, raw when not, checked on the way in."""

from __future__ import annotations

import random

import pytest

from ferryman.agent.pagerelay import (
    END,
    HEADER,
    MAX_RAW,
    FrameScan,
    RelayError,
    RelayStats,
    check_header,
    pack,
    unpack,
)


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


def _stream() -> tuple[bytes, list[bytes]]:
    rng = random.Random(2)
    chunks = [b"page" * 4096, rng.randbytes(5000), rng.randbytes(24), b"\0" * 65536]
    return b"".join(pack(c) for c in chunks), chunks


@pytest.mark.parametrize("piece", [1, 3, 7, 8, 9, 1000, 1 << 20])
def test_a_scan_counts_frames_cut_anywhere(piece: int) -> None:
    """Frames a criu wrote itself, read in pieces of any size (a header split between two
    reads, several frames in one): counted as the relay counts its own, no payload read."""
    stream, chunks = _stream()
    stats = RelayStats()
    scan = FrameScan(stats)
    for at in range(0, len(stream), piece):
        scan.feed(stream[at : at + piece])
    assert scan.at_boundary
    assert stats.frames == len(chunks)
    assert stats.raw_bytes == sum(map(len, chunks))
    assert stats.wire_bytes == len(stream)
    assert stats.compressed_frames == 2  # the pattern and the zeros, not the random ones


def test_a_scan_stops_inside_a_frame_and_refuses_bad_headers() -> None:
    stream, _ = _stream()
    scan = FrameScan(RelayStats())
    scan.feed(stream[:-1])
    assert not scan.at_boundary  # the relay refuses to end the stream here
    scan = FrameScan(RelayStats())
    scan.feed(stream[:HEADER.size - 1])
    assert not scan.at_boundary
    with pytest.raises(RelayError, match="empty frame"):
        FrameScan(RelayStats()).feed(END)
    with pytest.raises(RelayError, match="bad frame header"):
        FrameScan(RelayStats()).feed(HEADER.pack(MAX_RAW + 1, 1))
    with pytest.raises(RelayError, match="bad frame header"):
        FrameScan(RelayStats()).feed(HEADER.pack(10, 11))
