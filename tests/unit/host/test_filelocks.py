"""Reading /proc/locks and fdinfo's lock lines: which locks are held, by whom, on which file."""

from __future__ import annotations

import os

from ferryman.host.filelocks import Lock, holds_lock, locked_here, parse_locks

LOCKS = """\
1: POSIX  ADVISORY  WRITE 771 fe:00:15360077 0 EOF
2: FLOCK  ADVISORY  WRITE 771 fe:00:15360076 0 EOF
2: -> FLOCK  ADVISORY  WRITE 838 fe:00:15360076 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:2b:99 0 100
4: LEASE  ACTIVE    READ  12 08:11:7 0 EOF
5: garbage
6: POSIX  ADVISORY  WRITE x fe:00:1 0 EOF
"""


def test_held_locks_with_owner_and_file_and_no_waiters() -> None:
    assert parse_locks(LOCKS) == [
        Lock("POSIX", 771, (0xFE, 0), 15360077),
        Lock("FLOCK", 771, (0xFE, 0), 15360076),
        Lock("OFDLCK", -1, (0, 0x2B), 99),
        Lock("LEASE", 12, (8, 0x11), 7),
    ]


def test_no_locks() -> None:
    assert parse_locks("") == []


def test_the_node_s_locks_on_the_tree_s_files() -> None:
    dev = os.makedev(0xFE, 0)
    files = [("/run/app.pid", dev, 15360076), ("/var/db.lock", dev, 15360077),
             ("/tmp/ofd", os.makedev(0, 0x2B), 99), ("/etc/other", dev, 5)]
    locks = parse_locks(LOCKS)
    assert locked_here(locks, files) == ["/run/app.pid", "/tmp/ofd", "/var/db.lock"]
    assert locked_here([], files) == []


def test_the_locks_waited_for_are_the_arrow_lines() -> None:
    assert parse_locks(LOCKS, waiting=True) == [Lock("FLOCK", 838, (0xFE, 0), 15360076)]


def test_an_fd_holds_a_lock_when_its_fdinfo_has_a_lock_line() -> None:
    text = ("pos:\t0\nflags:\t02100001\nmnt_id:\t27\nino:\t2147190\n"
            "lock:\t1: FLOCK  ADVISORY  WRITE 15828 fe:00:2147190 0 EOF\n"
            "lock:\t2: OFDLCK ADVISORY  READ  -1 fe:00:2147190 0 100\n")
    assert holds_lock(text)
    assert holds_lock("lock:\t1: a shape no kernel wrote yet\n")  # inclusive
    assert not holds_lock("pos:\t0\nflags:\t0100000\n")
    assert not holds_lock("pos:\t0\nflags:\t0100000\nmnt_id:\t27\tlock: in a value\n")
