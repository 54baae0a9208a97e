"""Where a node's free memory goes back to its hypervisor; memory made resident and given
back (an anonymous mapping, no files but a fake sysfs tree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.host.prefault import (
    CHUNK,
    Reserve,
    balloon_reports,
    cgroup_room,
    free_pages_reported,
)

REPORTING = "0110010100000000000000000000000010"  # bits 1, 2, 5, 7: stats, OOM, reporting
NOT_REPORTING = "0110000100000000000000000000000010"


@pytest.mark.parametrize(("device", "features", "expected"), [
    ("0x0005\n", REPORTING + "\n", True),
    ("0x0005", NOT_REPORTING, False),
    ("0x0002", REPORTING, False),  # a block device with the same bit set
    ("0x0005", "01100", False),  # too short to have bit 5
    ("balloon", REPORTING, False),
])
def test_a_reporting_balloon_is_told_apart(device: str, features: str, expected: bool) -> None:
    assert balloon_reports(device, features) is expected


def virtio(root: Path, name: str, device: str, features: str) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "device").write_text(device + "\n")
    (d / "features").write_text(features + "\n")


def test_any_reporting_balloon_on_the_bus_counts(tmp_path: Path) -> None:
    virtio(tmp_path, "virtio0", "0x0002", REPORTING)
    assert not free_pages_reported(tmp_path)
    virtio(tmp_path, "virtio1", "0x0005", REPORTING)
    (tmp_path / "virtio2").mkdir()  # a device without those files is skipped
    assert free_pages_reported(tmp_path)


def test_no_virtio_bus_is_no_such_guest(tmp_path: Path) -> None:
    assert not free_pages_reported(tmp_path / "missing")


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


def test_a_reserve_is_resident_and_given_back_in_parts() -> None:
    r = Reserve()
    before = rss()
    assert r.fill(CHUNK + 5000) == CHUNK + 8192  # whole pages, in chunks
    assert r.size == CHUNK + 8192
    assert rss() - before >= CHUNK  # touched, not only mapped
    assert sorted(n for n, _ in r.timings) == [8192, CHUNK]  # each chunk's filling timed
    assert all(s > 0 for _, s in r.timings)
    assert r.release(1) == 8192  # the last chunk first
    assert r.size == CHUNK
    assert r.release() == CHUNK
    assert r.size == 0
    assert r.release() == 0
    assert rss() - before < CHUNK // 2


def test_a_reserve_stops_at_its_deadline() -> None:
    r = Reserve()
    assert r.fill(4 * CHUNK, deadline=0.0) == 0
    assert r.timings == []
    r.release()


def limits(root: Path, rel: str, limit: str, usage: int, *, v1: bool = False) -> None:
    d = root / ("memory" if v1 else "") / rel
    d.mkdir(parents=True, exist_ok=True)
    (d / ("memory.limit_in_bytes" if v1 else "memory.max")).write_text(limit + "\n")
    (d / ("memory.usage_in_bytes" if v1 else "memory.current")).write_text(f"{usage}\n")


def mounts(root: Path, *, v2: str = "", v1_memory: str = "") -> str:
    """/proc/self/mountinfo with cgroup2 at ``root/v2`` and v1 memory at ``root/v1_memory``."""
    lines = ["22 1 0:21 / / rw,relatime - ext4 /dev/vda rw",
             f"30 22 0:26 / {root / v2} rw,nosuid - cgroup2 cgroup2 rw"]
    if v1_memory:
        lines.append(f"31 22 0:27 / {root / v1_memory} rw - cgroup cgroup rw,memory")
    return "\n".join(lines) + "\n"


def test_the_tightest_cgroup_v2_level_bounds_the_room(tmp_path: Path) -> None:
    limits(tmp_path, "system.slice", "max", 5 << 30)
    limits(tmp_path, "system.slice/ferryman.service", str(2 << 30), 1 << 30)
    info = mounts(tmp_path)
    assert cgroup_room("0::/system.slice/ferryman.service\n", info) == 1 << 30
    limits(tmp_path, "system.slice", str(6 << 30), int(5.5 * (1 << 30)))
    assert cgroup_room("0::/system.slice/ferryman.service\n", info) == 512 << 20


def test_cgroup_v2_where_it_is_mounted(tmp_path: Path) -> None:
    """A hybrid host: cgroup2 at /sys/fs/cgroup/unified, found in mountinfo."""
    limits(tmp_path / "unified", "agents.slice", str(2 << 30), 1 << 30)
    limits(tmp_path, "agents.slice", str(8 << 30), 0)  # not the cgroup2 mount: not read
    assert cgroup_room("0::/agents.slice\n", mounts(tmp_path, v2="unified")) == 1 << 30


def test_no_limit_is_no_bound(tmp_path: Path) -> None:
    limits(tmp_path, "user.slice", "max", 1 << 30)
    info = mounts(tmp_path)
    assert cgroup_room("0::/user.slice\n", info) is None
    assert cgroup_room("0::/\n", info) is None  # the root has no memory.max
    assert cgroup_room("0::/missing\n", info) is None


def test_cgroup_v1_memory_controller(tmp_path: Path) -> None:
    text = "9:name=systemd:/\n4:memory:/agents/b\n1:cpu:/\n0::/\n"
    info = mounts(tmp_path, v2="unified", v1_memory="memory")
    limits(tmp_path, "agents/b", str(3 << 30), 1 << 30, v1=True)
    assert cgroup_room(text, info) == 2 << 30
    limits(tmp_path, "agents/b", "9223372036854771712", 1 << 30, v1=True)  # unlimited
    assert cgroup_room(text, info) is None
    assert cgroup_room(text, mounts(tmp_path)) is None  # no v1 memory hierarchy mounted
