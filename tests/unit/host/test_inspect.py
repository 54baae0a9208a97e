"""Inspecting a workload from /proc: parsers, and this very test process as the workload."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ferryman.errors import NoSuchProcess
from ferryman.host import inspect

MAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 123   /usr/bin/python3.11
55d0c0001000-55d0c0002000 r-xp 00001000 08:01 123   /usr/bin/python3.11
7f0000000000-7f0000001000 rw-p 00000000 00:00 0     [heap]
7f0000001000-7f0000002000 rw-s 00000000 00:01 9     /dev/shm/x (deleted)
7f0000002000-7f0000003000 r--p 00000000 08:01 77    /opt/my lib/a b.so
7f0000003000-7f0000004000 rw-p 00000000 00:00 0
7f0000004000-7f0000005000 rw-s 00000000 08:01 78    /srv/db/data.mdb
7f0000005000-7f0000006000 r--s 00000000 08:01 78    /srv/db/data.mdb
7f0000006000-7f0000007000 rw-p 00000000 08:01 79    /srv/db/private.map
"""


def test_parse_nspid() -> None:
    assert inspect.parse_nspid("Name:\tx\nNSpid:\t3174\t1\n") == (3174, 1)
    assert inspect.parse_nspid("NSpid:\t42\n") == (42,)
    assert inspect.parse_nspid("Name: x\n") == ()


def test_parse_map_paths_marks_shared_writable_mappings() -> None:
    assert inspect.parse_map_paths(MAPS) == {
        "/usr/bin/python3.11": False, "/opt/my lib/a b.so": False,
        "/srv/db/data.mdb": True,  # rw-s: the workload writes the file itself
        "/srv/db/private.map": False,  # rw-p: copy-on-write, the file stays as it is
    }


@pytest.mark.parametrize(("text", "writes"), [
    ("pos:\t0\nflags:\t0100000\nmnt_id:\t1\n", False),  # O_RDONLY|O_LARGEFILE
    ("pos:\t0\nflags:\t02102001\n", True),  # O_WRONLY|O_APPEND|...
    ("flags:\t0100002\n", True),  # O_RDWR
    ("pos:\t0\n", False), ("flags:\tzz\n", False)])
def test_opened_for_writing(text: str, writes: bool) -> None:
    assert inspect.opened_for_writing(text) is writes


def test_files_this_process_writes_are_live(tmp_path: Path) -> None:
    written, read = tmp_path / "log", tmp_path / "conf"
    read.write_text("x")
    with written.open("a") as w, read.open() as r:
        facts = inspect.inspect_workload(os.getpid())
        refs = {f.path: f for f in facts.files}
        assert refs[str(written)].live
        assert not refs[str(read)].live
        assert w.fileno() > 2
        assert r.fileno() > 2
        here = refs[str(read)].stat
        assert here.ino == read.stat().st_ino
        assert here.same_file(inspect.stat_path(read) or here)


@pytest.mark.parametrize(("link", "inode"), [
    ("socket:[12345]", 12345), ("socket:[x]", None), ("pipe:[1]", None), ("/socket:[1]", None)])
def test_socket_inode(link: str, inode: int | None) -> None:
    assert inspect.socket_inode(link) == inode


@pytest.mark.parametrize(("link", "wanted"), [
    ("/etc/hosts", True), ("/dev/null", True), ("pipe:[1]", False),
    ("anon_inode:[eventfd]", False), ("/tmp/x (deleted)", False), ("/proc/1/status", False),
    ("/dev/pts/3", False), ("/sys/kernel/x", False), ("/memfd:x (deleted)", False)])
def test_wanted_path(link: str, wanted: bool) -> None:
    assert inspect.wanted_path(link) is wanted


def test_stat_path(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"12345")
    st = inspect.stat_path(f)
    assert st is not None
    assert (st.ftype, st.size) == ("f", 5)
    assert st.mtime_ns == f.stat().st_mtime_ns
    d = inspect.stat_path(tmp_path)
    assert d is not None
    assert (d.ftype, d.size) == ("d", 0)
    assert inspect.stat_path(tmp_path / "nope") is None
    assert inspect.stat_path(f / "under-a-file") is None
    null = inspect.stat_path("/dev/null")
    assert null is not None
    assert null.ftype == "c"


def test_this_process_as_a_workload(tmp_path: Path) -> None:
    kept = tmp_path / "kept.txt"
    kept.write_text("hello")
    gone = tmp_path / "gone.txt"
    gone.write_text("bye")
    with kept.open() as _k, gone.open() as _g:
        gone.unlink()
        facts = inspect.inspect_workload(os.getpid())
    assert facts.pid == os.getpid()
    assert os.getpid() in facts.ids
    assert facts.processes >= 1
    assert facts.rss_bytes > 0
    assert not facts.own_net_ns
    assert not facts.own_time_ns
    by_path = {f.path: f for f in facts.files}
    assert by_path[str(kept)].kind == "fd"
    assert by_path[str(kept)].stat.size == 5
    assert str(gone) not in by_path
    assert facts.deleted_files >= 1
    assert by_path[str(Path.cwd())].kind == "cwd"
    assert by_path[os.path.realpath(sys.executable)].kind == "exe"
    assert any(f.kind == "map" for f in facts.files)
    assert [f.path for f in facts.files] == sorted(by_path)


def test_missing_process() -> None:
    with pytest.raises(NoSuchProcess):
        inspect.inspect_workload(4_000_000)


@pytest.mark.parametrize(("text", "index"), [
    ("pos:\t0\nflags:\t0100002\nmnt_id:\t27\nino:\t5\ntty-index:\t7\n", 7),
    ("pos:\t0\nflags:\t0100002\n", None),
    ("tty-index:\tseven\n", None),
])
def test_a_pty_masters_index_is_its_fdinfo_tty_index(text: str, index: int | None) -> None:
    assert inspect.parse_tty_index(text) == index


@pytest.mark.parametrize(("link", "index"), [
    ("/dev/pts/0", 0), ("/dev/pts/12", 12), ("/dev/pts/ptmx", None), ("/dev/ptmx", None),
    ("/dev/pts/1/x", None), ("/dev/tty1", None), ("/srv/dev/pts/3", None),
])
def test_a_pty_slaves_index_is_its_name_in_dev_pts(link: str, index: int | None) -> None:
    assert inspect.pts_index(link) == index


def test_this_process_holding_a_pty_pair_names_its_index_once() -> None:
    master, slave = os.openpty()
    try:
        index = inspect.pts_index(os.readlink(f"/proc/self/fd/{slave}"))
        assert index is not None
        assert inspect.inspect_workload(os.getpid()).ptys == (index,)  # master and slave
    finally:
        os.close(master)
        os.close(slave)
    assert index not in inspect.inspect_workload(os.getpid()).ptys
