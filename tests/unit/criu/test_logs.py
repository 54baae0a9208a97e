"""Finding CRIU's reason in its log, at any log level."""

from __future__ import annotations

from pathlib import Path

from ferryman.criu.logs import first_error, first_error_in, tail

V4 = """(00.000012) Version: 4.2.1
(00.022856) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: EPERM
(00.086848) Error (criu/page-xfer.c:244): page-xfer: The page server doesn't answer: EINVAL
(00.101383) Error (criu/cr-dump.c:1975): Dumping FAILED.
"""
V2 = """Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: EPERM
Warn  (compel/arch/x86/src/lib/infect.c:419): Will restore 13479 with interrupted system call
Error (criu/sk-unix.c:351): unix: Unix socket 283317 not found
Error (criu/cr-dump.c:1975): Dumping FAILED.
"""
RESTORE_V2 = """Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: EPERM
     3: Error (criu/pipes.c:184): 0x216506: Error splicing data: Resource temporarily unavailable
     1: Error (criu/cr-restore.c:1265): 3 exited, status=1
Error (criu/cr-restore.c:2331): Restoring FAILED.
"""
PIE = """(00.037405) pie: 1: Error (criu/pie/restorer.c:12): pie: 1: something broke
"""


def test_first_real_error_with_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "dump.log"
    log.write_text(V4)
    assert first_error(log) == "page-xfer: The page server doesn't answer: EINVAL"


def test_first_real_error_without_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "dump.log"
    log.write_text(V2)
    assert first_error(log) == "unix: Unix socket 283317 not found"


RESTORE = """Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: EPERM
     1: Error (criu/files-reg.c:2353): Can't open file tmp/x/data.txt on restore: ENOENT
     1: Error (criu/files.c:1221): Unable to open fd=3 id=0x15
Error (criu/cr-restore.c:2331): Restoring FAILED.
"""


def test_first_error_of_a_restored_task_is_indented_by_its_pid(tmp_path: Path) -> None:
    log = tmp_path / "restore.log"
    log.write_text(RESTORE)
    assert first_error(log) == "Can't open file tmp/x/data.txt on restore: ENOENT"


def test_first_error_of_a_restored_task_at_the_default_level(tmp_path: Path) -> None:
    """A task's lines start with its PID, padded with spaces: the reason, not 'FAILED'."""
    log = tmp_path / "restore.log"
    log.write_text(RESTORE_V2)
    assert first_error(log) == ("0x216506: Error splicing data: Resource temporarily "
                                "unavailable")


def test_first_error_in_captured_output() -> None:
    """criu run without -o logs to stderr: the same reason from the captured text."""
    assert first_error_in(V2.splitlines()) == "unix: Unix socket 283317 not found"
    assert first_error_in(["Dumping done", ""]) is None


def test_no_error_and_missing_log(tmp_path: Path) -> None:
    log = tmp_path / "ok.log"
    log.write_text("(00.000012) Version: 4.2.1\n")
    assert first_error(log) is None
    assert first_error(tmp_path / "absent.log") is None
    assert tail(tmp_path / "absent.log") == ""


def test_tail_keeps_the_end(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("a" * 10000 + "END")
    assert tail(log, 100).endswith("END")
    assert len(tail(log, 100)) == 100
