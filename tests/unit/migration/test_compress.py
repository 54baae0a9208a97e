"""--compress auto's decision: compress when the link, not the CPU, is the bottleneck."""

from __future__ import annotations

import pytest

from ferryman.errors import UsageError
from ferryman.migration.compress import Compress, choose, parse_compress, seconds_per_byte

GBIT = 125_000_000  # bytes/s
REDIS = {"sample_ratio": 5.2, "compress_bytes_per_s": 720e6}  # measured on this machine


def test_redis_on_a_one_gbit_link_is_compressed() -> None:
    c = choose(Compress.AUTO, link_bytes_per_s=GBIT, **REDIS)
    assert c.on
    assert "slower than compressing" in c.reason
    assert (c.sample_ratio, c.link_bytes_per_s) == (5.2, GBIT)


def test_redis_on_a_ten_gbit_link_is_not_the_cpu_is_slower() -> None:
    c = choose(Compress.AUTO, link_bytes_per_s=10 * GBIT, **REDIS)
    assert not c.on
    assert "faster than compressing" in c.reason


def test_random_pages_are_never_compressed_by_auto() -> None:
    c = choose(Compress.AUTO, link_bytes_per_s=GBIT // 10, sample_ratio=0.996,
               compress_bytes_per_s=8e9)
    assert not c.on
    assert "do not compress" in c.reason


def test_pages_that_do_not_compress_say_so_though_the_link_was_not_timed() -> None:
    # agent/compression.py times the link only when the sample compresses: the reason is
    # the sample's, not "the link is too fast to time" (bench 2026-12-06-085539 said that
    # of random pages on a 1 Gbit/s link)
    c = choose(Compress.AUTO, link_bytes_per_s=None, sample_ratio=1.02,
               compress_bytes_per_s=2e9)
    assert not c.on
    assert "do not compress (sampled ratio 1.02" in c.reason
    assert c.link_bytes_per_s is None


def test_compression_must_win_by_the_margin() -> None:
    # ratio 1.3 on a link as fast as the compressor: 1/(1.3 link) vs 1/link, 1.3 > 1.25 wins;
    # with the compressor just slower than the link it loses
    assert choose(Compress.AUTO, link_bytes_per_s=GBIT, sample_ratio=1.3,
                  compress_bytes_per_s=10 * GBIT).on
    assert not choose(Compress.AUTO, link_bytes_per_s=GBIT, sample_ratio=1.3,
                      compress_bytes_per_s=0.9 * GBIT).on


def test_unmeasured_link_or_sample_means_off_and_on_off_are_obeyed() -> None:
    assert not choose(Compress.AUTO, link_bytes_per_s=None, **REDIS).on
    assert not choose(Compress.AUTO, link_bytes_per_s=GBIT, sample_ratio=None,
                      compress_bytes_per_s=None).on
    assert choose(Compress.ON, link_bytes_per_s=None, sample_ratio=None,
                  compress_bytes_per_s=None).on
    assert not choose(Compress.OFF, link_bytes_per_s=GBIT, **REDIS).on


def test_pre_copied_pages_stay_on_criu_s_path_even_when_on() -> None:
    c = choose(Compress.ON, link_bytes_per_s=GBIT, **REDIS, pre_copies=True)
    assert not c.on
    assert "not compressed" in c.reason


def test_seconds_per_byte_is_the_slower_stage_of_the_pipeline() -> None:
    assert seconds_per_byte(100.0, 4.0, 200.0, False) == pytest.approx(0.01)
    assert seconds_per_byte(100.0, 4.0, 200.0, True) == pytest.approx(0.005)  # compressor
    assert seconds_per_byte(100.0, 4.0, 1e9, True) == pytest.approx(0.0025)  # the link


def test_parse_compress() -> None:
    assert parse_compress("auto") is Compress.AUTO
    with pytest.raises(UsageError, match="auto, on or off"):
        parse_compress("yes")
