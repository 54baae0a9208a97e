"""Reading /proc/locks: which locks are held, by whom, on which file."""

from __future__ import annotations

from ferryman.host.filelocks import Lock, parse_locks

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
