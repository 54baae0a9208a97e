"""criu/factcache.py: CRIU's facts are reused only for the same binary, boot and kernel."""

from __future__ import annotations

import json
from pathlib import Path

from ferryman.criu import factcache

VERSION = (4, 2, 1)
FEATURES = {"mem_track": False, "lazy_pages": True}
PROBES = {"network_lock": True, "time_ns": True}
CPUINFO = b"\x01\x02cpu\xff"


def _key(tmp_path: Path, boot: str = "boot-1", release: str = "6.18") -> dict[str, object]:
    binary = tmp_path / "criu"
    if not binary.exists():
        binary.write_bytes(b"criu v1")
    return factcache.cache_key("criu", ["lazy_pages", "mem_track"], boot_id=boot,
                               release=release, which=lambda _: str(binary))


def test_round_trip(tmp_path: Path) -> None:
    key = _key(tmp_path)
    text = factcache.encode(key, VERSION, FEATURES, CPUINFO, PROBES, now=1000.0)
    assert factcache.decode(text, key, 1001.0) == (VERSION, FEATURES, CPUINFO, PROBES)


def test_other_boot_kernel_or_binary_is_not_reused(tmp_path: Path) -> None:
    key = _key(tmp_path)
    text = factcache.encode(key, VERSION, FEATURES, CPUINFO, PROBES, now=1000.0)
    assert factcache.decode(text, _key(tmp_path, boot="boot-2"), 1001.0) is None
    assert factcache.decode(text, _key(tmp_path, release="6.19"), 1001.0) is None
    (tmp_path / "criu").write_bytes(b"criu v2, rebuilt")  # size and mtime change
    assert factcache.decode(text, _key(tmp_path), 1001.0) is None


def test_features_asked_are_part_of_the_key(tmp_path: Path) -> None:
    key = _key(tmp_path)
    other = dict(key, asked=["lazy_pages", "mem_track", "pidfd_store"])
    text = factcache.encode(key, VERSION, FEATURES, CPUINFO, PROBES, now=1000.0)
    assert factcache.decode(text, other, 1001.0) is None


def test_too_old_or_from_the_future_is_not_reused(tmp_path: Path) -> None:
    key = _key(tmp_path)
    text = factcache.encode(key, VERSION, FEATURES, CPUINFO, PROBES, now=1000.0)
    assert factcache.decode(text, key, 1000.0 + factcache.MAX_AGE_S + 1) is None
    assert factcache.decode(text, key, 999.0) is None


def test_malformed_is_not_reused(tmp_path: Path) -> None:
    key = _key(tmp_path)
    good = json.loads(factcache.encode(key, VERSION, FEATURES, CPUINFO, PROBES, now=1000.0))
    for bad in ("", "{", "[]", json.dumps(dict(good, features={"mem_track": "yes"})),
                json.dumps(dict(good, cpuinfo="not base64!")),
                json.dumps(dict(good, version=[4, 2])),
                json.dumps({k: v for k, v in good.items() if k != "probes"})):
        assert factcache.decode(bad, key, 1001.0) is None, bad


def test_save_then_load(tmp_path: Path) -> None:
    key = _key(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    assert factcache.load(state, key) is None
    import time
    factcache.save(state, factcache.encode(key, VERSION, FEATURES, CPUINFO, PROBES,
                                           now=time.time()))
    assert factcache.load(state, key) == (VERSION, FEATURES, CPUINFO, PROBES)
    assert (state / factcache.FILE_NAME).stat().st_mode & 0o777 == 0o600
    assert [p.name for p in state.iterdir()] == [factcache.FILE_NAME]  # no temporary left
