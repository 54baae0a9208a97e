"""The tunnel's framing of what comes back: rsync's stdout and the remote rsync's stderr."""

from __future__ import annotations

import argparse

import pytest

from ferryman.fs import tunnel
from ferryman.fs.tunnel import FRAME
from ferryman.host import deadlink


def _frames(*parts: tuple[int, bytes]) -> bytearray:
    return bytearray(b"".join(FRAME.pack(ch, len(d)) + d for ch, d in parts))


def test_complete_frames_are_delivered_in_order_and_partial_ones_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    out: list[tuple[int, bytes]] = []
    monkeypatch.setattr(tunnel, "_write_all", lambda fd, data: out.append((fd, data)))
    inbox = _frames((1, b"protocol"), (2, b"rsync: [receiver] write failed\n"), (1, b"x" * 10))
    whole = bytes(inbox)
    inbox = bytearray(whole[:-4])  # the last frame is not complete yet
    tunnel._deliver(inbox)
    assert out == [(1, b"protocol"), (2, b"rsync: [receiver] write failed\n")]
    inbox += whole[-4:]
    tunnel._deliver(inbox)
    assert out[-1] == (1, b"x" * 10)
    assert inbox == bytearray()


def test_once_rsync_is_gone_its_data_is_dropped_but_errors_still_arrive(
        monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[bytes] = []

    def write(fd: int, data: bytes) -> None:
        if fd == 1:
            raise BrokenPipeError
        errors.append(data)

    monkeypatch.setattr(tunnel, "_write_all", write)
    inbox = _frames((1, b"late protocol bytes"), (2, b"No space left on device (28)\n"))
    tunnel._deliver(inbox)
    assert errors == [b"No space left on device (28)\n"]
    assert inbox == bytearray()


def test_the_dead_link_bound_comes_from_the_command_line_as_host_deadlink_gives_it() -> None:
    assert tunnel._dead_link(deadlink.tunnel_argument()) == (
        deadlink.KEEPIDLE, deadlink.KEEPINTVL, deadlink.KEEPCNT, deadlink.USER_TIMEOUT_MS)
    for bad in ("5000", "2,1,3", "2,1,3,five"):
        with pytest.raises(argparse.ArgumentTypeError):
            tunnel._dead_link(bad)
