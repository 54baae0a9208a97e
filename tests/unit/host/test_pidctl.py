"""PID control without touching the kernel: validation, parsing, errno translation, and
the procfs files read and written through a fake procfs root."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ferryman.cli.main import build_parser
from ferryman.errors import PidControlError, PidTaken, UsageError
from ferryman.host.pidctl import (
    check_last_pid,
    check_pid,
    clone3_error,
    parse_pid_max,
    pid_available,
    read_ns_last_pid,
    read_pid_max,
    set_ns_last_pid,
    spawn_with_pid,
)


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A procfs root seen from our own PID namespace, pid_max 32768, PIDs 1 and 300 in use."""
    root = tmp_path / "proc"
    (root / "sys" / "kernel").mkdir(parents=True)
    (root / "sys" / "kernel" / "pid_max").write_text("32768\n")
    (root / "sys" / "kernel" / "ns_last_pid").write_text("1234\n")
    (root / "1").mkdir()
    (root / "300").mkdir()
    (root / "self").symlink_to(str(os.getpid()))
    return root


# -- parsing and validation ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [("32768\n", 32768), ("4194304", 4194304)])
def test_parse_pid_max(text: str, expected: int) -> None:
    assert parse_pid_max(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "1", "32768 1"])
def test_parse_pid_max_rejects_garbage(text: str) -> None:
    with pytest.raises(PidControlError, match=r"unexpected kernel\.pid_max"):
        parse_pid_max(text)


@pytest.mark.parametrize("pid", [1, 2, 300, 32767])
def test_check_pid_accepts_1_to_pid_max_minus_1(pid: int) -> None:
    check_pid(pid, 32768)


@pytest.mark.parametrize("pid", [-1, 0, 32768, 40000])
def test_check_pid_rejects_out_of_range(pid: int) -> None:
    with pytest.raises(UsageError, match=f"PID {pid} is out of range") as info:
        check_pid(pid, 32768)
    assert info.value.hint is not None
    assert "1 to 32767" in info.value.hint


@pytest.mark.parametrize("last", [1, 299, 32766])
def test_check_last_pid_accepts_values_whose_successor_is_a_pid(last: int) -> None:
    check_last_pid(last, 32768)


@pytest.mark.parametrize("last", [-5, 0, 32767, 32768])
def test_check_last_pid_rejects_values_whose_successor_is_not_a_pid(last: int) -> None:
    with pytest.raises(UsageError) as info:
        check_last_pid(last, 32768)
    assert "1 to 32766" in info.value.one_line()
    assert "\n" not in info.value.one_line()


# -- clone3 errno translation -------------------------------------------------------------

def test_eexist_means_the_pid_is_taken() -> None:
    error = clone3_error(errno.EEXIST, 500)
    assert isinstance(error, PidTaken)
    assert (error.pid, error.got, error.errno) == (500, None, errno.EEXIST)
    assert error.one_line().startswith("PID 500 is taken by another process: ")


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.E2BIG])
def test_kernels_without_clone3_set_tid_fall_back(err: int) -> None:
    assert clone3_error(err, 500) is None


def test_eperm_asks_for_root() -> None:
    error = clone3_error(errno.EPERM, 500)
    assert isinstance(error, PidControlError)
    assert error.hint is not None
    assert "root" in error.hint
    assert error.errno == errno.EPERM


def test_einval_explains_the_kernels_conditions() -> None:
    error = clone3_error(errno.EINVAL, 500)
    assert isinstance(error, PidControlError)
    assert "init" in (error.hint or "")


def test_other_errnos_keep_their_number() -> None:
    error = clone3_error(errno.EAGAIN, 500)
    assert isinstance(error, PidControlError)
    assert error.errno == errno.EAGAIN
    assert os.strerror(errno.EAGAIN) in error.message


def test_pid_errors_have_their_own_exit_codes() -> None:
    codes = {PidControlError("x").exit_code, PidTaken(5).exit_code}
    assert codes == {30, 31}
    assert PidTaken(5, got=6).message == (
        "PID 5 was taken by another process while ours started (it got 6)")


# -- procfs through an injected root ------------------------------------------------------

def test_read_pid_max_and_ns_last_pid(proc: Path) -> None:
    assert read_pid_max(proc) == 32768
    assert read_ns_last_pid(proc) == 1234


def test_missing_procfs_files_become_ferryman_errors(tmp_path: Path) -> None:
    with pytest.raises(PidControlError, match="cannot read") as info:
        read_pid_max(tmp_path)
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_set_ns_last_pid_writes_the_value(proc: Path) -> None:
    set_ns_last_pid(4999, proc)
    assert read_ns_last_pid(proc) == 4999


def test_set_ns_last_pid_validates_before_writing(proc: Path) -> None:
    with pytest.raises(UsageError):
        set_ns_last_pid(32767, proc)
    assert read_ns_last_pid(proc) == 1234


def test_pid_available(proc: Path) -> None:
    assert not pid_available(1, proc)
    assert not pid_available(300, proc)
    assert pid_available(301, proc)


def test_pid_available_validates_the_pid(proc: Path) -> None:
    with pytest.raises(UsageError):
        pid_available(0, proc)


def test_pid_available_refuses_a_procfs_of_another_namespace(proc: Path) -> None:
    (proc / "self").unlink()
    (proc / "self").symlink_to("1")  # as seen by a process whose PID there is 1, not ours
    with pytest.raises(PidControlError, match="belongs to another PID namespace") as info:
        pid_available(301, proc)
    assert "--mount-proc" in (info.value.hint or "")


def test_spawn_with_pid_validates_before_creating_anything(proc: Path) -> None:
    with pytest.raises(UsageError, match="no program"):
        spawn_with_pid([], 500, proc=proc)
    with pytest.raises(UsageError, match="out of range"):
        spawn_with_pid(["true"], 32768, proc=proc)
    with pytest.raises(PidControlError, match="command not found"):
        spawn_with_pid(["no-such-program-here"], 500, env={"PATH": str(proc)}, proc=proc)


# -- command line -------------------------------------------------------------------------

def test_pid_next_parses_n() -> None:
    args = build_parser().parse_args(["pid", "next", "699"])
    assert args.last == 699
    assert callable(args.run)


def test_pid_next_help_explains_the_race(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pid", "next", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ns_last_pid" in text
    assert "racy" in text
    assert "clone3" in text


def test_pid_next_rejects_a_non_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["pid", "next", "seven"])
    assert info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
