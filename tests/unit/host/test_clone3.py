"""The clone3 argument block: layout checked against the kernel's struct clone_args."""

from __future__ import annotations

import signal
import struct

from ferryman.host.clone3 import (
    CLONE_ARGS_SIZE_VER1,
    CLONE_CLEAR_SIGHAND,
    SYS_CLONE3,
    pack_clone_args,
)

# Byte offsets of the __aligned_u64 fields in include/uapi/linux/sched.h.
OFFSETS = {"flags": 0, "pidfd": 8, "child_tid": 16, "parent_tid": 24, "exit_signal": 32,
           "stack": 40, "stack_size": 48, "tls": 56, "set_tid": 64, "set_tid_size": 72}


def field(blob: bytes, name: str) -> int:
    value: int = struct.unpack_from("=Q", blob, OFFSETS[name])[0]
    return value


def test_the_block_is_version_1_of_struct_clone_args() -> None:
    blob = pack_clone_args(set_tid_addr=0x7FFF_1234_5678)
    assert len(blob) == CLONE_ARGS_SIZE_VER1 == 80


def test_set_tid_points_at_one_pid() -> None:
    blob = pack_clone_args(set_tid_addr=0x7FFF_1234_5678)
    assert field(blob, "set_tid") == 0x7FFF_1234_5678
    assert field(blob, "set_tid_size") == 1


def test_the_child_signals_its_parent_with_sigchld_like_fork() -> None:
    blob = pack_clone_args(set_tid_addr=8)
    assert field(blob, "exit_signal") == signal.SIGCHLD.value == 17


def test_only_clear_sighand_is_set_and_the_child_shares_nothing() -> None:
    blob = pack_clone_args(set_tid_addr=8)
    assert field(blob, "flags") == CLONE_CLEAR_SIGHAND == 0x100000000
    for name in ("pidfd", "child_tid", "parent_tid", "stack", "stack_size", "tls"):
        assert field(blob, name) == 0, name


def test_fields_can_be_overridden() -> None:
    blob = pack_clone_args(set_tid_addr=16, set_tid_size=2, exit_signal=0, flags=0)
    assert (field(blob, "flags"), field(blob, "exit_signal"), field(blob, "set_tid_size")) == (
        0, 0, 2)


def test_syscall_number_is_the_generic_one() -> None:
    assert SYS_CLONE3 == 435
