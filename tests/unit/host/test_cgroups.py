"""Finding a workload's own freezer cgroup (parsing only; no cgroup is touched)."""

from __future__ import annotations

from pathlib import Path

from ferryman.host.cgroups import Freezer, find_freezer, parse_cgroup_file, parse_mountinfo

CGROUP_V1 = """9:name=systemd:/
6:freezer:/ferryman/w1
4:memory:/process_api/53f6
0::/
"""
MOUNTINFO = """24 23 0:21 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
30 24 0:27 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
35 24 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_parse_cgroup_file_v1_and_v2() -> None:
    assert parse_cgroup_file(CGROUP_V1) == ("/ferryman/w1", "/")
    assert parse_cgroup_file("0::/system.slice/x.service\n") == (None, "/system.slice/x.service")


def test_parse_mountinfo_finds_both_hierarchies() -> None:
    assert parse_mountinfo(MOUNTINFO) == ("/sys/fs/cgroup/freezer", "/sys/fs/cgroup/unified")


def _fake_proc(tmp: Path, cgroup: str, mountinfo: str) -> Path:
    proc = tmp / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "self").mkdir()
    (proc / "42" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    return proc


def _v1_cgroup(tmp_path: Path, procs: str) -> tuple[Path, Path]:
    """A v1 freezer cgroup ``w1`` holding ``procs``, and a /proc whose PID 42 is in it."""
    cg = tmp_path / "freezer" / "w1"
    cg.mkdir(parents=True)
    (cg / "freezer.state").write_text("THAWED\n")
    (cg / "cgroup.procs").write_text(procs)
    mi = MOUNTINFO.replace("/sys/fs/cgroup/freezer", str(tmp_path / "freezer"))
    return cg, _fake_proc(tmp_path, "6:freezer:/w1\n0::/\n", mi)


def test_own_freezer_cgroup_is_used_only_when_it_holds_exactly_the_tree(tmp_path: Path) -> None:
    cg, proc = _v1_cgroup(tmp_path, "42\n43\n")
    assert find_freezer(42, lambda: [42, 43], proc) == Freezer(cg, v2=False)
    # Another process shares the cgroup: freezing it would freeze a bystander.
    (cg / "cgroup.procs").write_text("42\n43\n99\n")
    assert find_freezer(42, lambda: [42, 43], proc) is None


def test_root_cgroup_is_never_frozen(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, "6:freezer:/\n0::/\n", MOUNTINFO)
    assert find_freezer(42, lambda: [42], proc) is None


def test_a_child_forked_between_the_two_reads_is_read_again(tmp_path: Path) -> None:
    """The cgroup was read before the shell forked its sleep, the tree after: the first
    snapshot differs, the second matches (CI lost a runc post-copy to this race once)."""
    cg, proc = _v1_cgroup(tmp_path, "42\n")
    reads = []

    def tree() -> list[int]:
        reads.append(1)
        (cg / "cgroup.procs").write_text("42\n43\n")  # the fork lands in the cgroup too
        return [42, 43]

    assert find_freezer(42, tree, proc) == Freezer(cg, v2=False)
    assert len(reads) == 2
    # A bystander never goes away: every try differs, and the cgroup is not used.
    (cg / "cgroup.procs").write_text("42\n43\n99\n")
    assert find_freezer(42, lambda: [42, 43], proc, tries=3) is None
