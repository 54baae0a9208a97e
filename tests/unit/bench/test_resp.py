"""S2's pure parts: RESP encoding and incremental parsing, the key set, the timeline."""

from __future__ import annotations

import pytest
from bench.resp import (
    Parser,
    ReplyError,
    Timeline,
    command,
    key,
    load_commands,
    longest_gap,
    value,
)


def test_command_is_an_array_of_bulk_strings() -> None:
    assert command(b"GET", b"key:1") == b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n"


def test_keys_match_redis_benchmarks_random_keys_and_values_differ() -> None:
    assert key(42) == b"key:000000000042"  # redis-benchmark -r: key:__rand_int__
    assert value(42).startswith(b"val:000000000042:")
    assert len({value(i) for i in range(1000)}) == 1000


def test_load_commands_cover_every_key_once_in_chunks() -> None:
    chunks = list(load_commands(25, batch=10))
    assert len(chunks) == 3
    parser_input = b"".join(chunks)
    assert parser_input.count(b"*3\r\n$3\r\nSET\r\n") == 25
    assert command(b"SET", key(24), value(24)) in parser_input


def test_parser_handles_every_reply_kind_split_anywhere() -> None:
    stream = b"+OK\r\n:1000000\r\n$-1\r\n$5\r\nhe\r\no\r\n$0\r\n\r\n"
    expected = ["OK", 1000000, None, b"he\r\no", b""]
    for cut in range(len(stream) + 1):
        p = Parser()
        assert p.feed(stream[:cut]) + p.feed(stream[cut:]) == expected
    p = Parser()
    assert [r for b in stream for r in p.feed(bytes([b]))] == expected


def test_parser_raises_on_error_replies_and_garbage() -> None:
    with pytest.raises(ReplyError, match="ERR wrong"):
        Parser().feed(b"-ERR wrong type\r\n")
    with pytest.raises(ReplyError, match="not a RESP reply"):
        Parser().feed(b"HTTP/1.1 400\r\n")


def test_timeline_rate_counts_whole_bins_inside_the_window() -> None:
    line = Timeline(t0=100.0, bin_ms=10, counts=(5,) * 100 + (0,) * 50 + (20,) * 100)
    assert line.rate(100.0, 101.0) == pytest.approx(500.0)  # 5 per 10 ms
    assert line.rate(101.0, 101.5) == pytest.approx(0.0)
    assert line.rate(101.0, 102.0) == pytest.approx(1000.0)  # half frozen, half at 2000/s
    assert line.rate(100.005, 100.015) is None  # no whole bin inside
    assert line.rate(102.0, 200.0) == pytest.approx(2000.0)  # clipped to the timeline


def test_longest_gap_and_when_it_ended() -> None:
    assert longest_gap([1.0, 1.1, 1.5, 1.6]) == (pytest.approx(0.4), 1.5)
    assert longest_gap([1.0]) == (0.0, None)
