"""systemd notification: NOTIFY_SOCKET's address and the message lines (no sockets)."""

from __future__ import annotations

from ferryman.host.sdnotify import ENV, Notifier, message, socket_address


def test_socket_address_kinds() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@/org/systemd/notify/42") == "\0/org/systemd/notify/42"
    assert socket_address(None) is None
    assert socket_address("") is None
    assert socket_address("vsock:2:1234") is None  # not ours to speak
    assert socket_address("relative/path") is None


def test_message_lines() -> None:
    assert message(READY=1) == b"READY=1"
    assert message(READY=1, status="listening on\n10.0.0.2:7070") == (
        b"READY=1\nSTATUS=listening on 10.0.0.2:7070")  # a status cannot add a state line
    assert message(STOPPING=1, status="x") == b"STOPPING=1\nSTATUS=x"


def test_take_from_removes_the_variable_so_children_do_not_inherit_it() -> None:
    env = {ENV: "@notify", "PATH": "/bin"}
    assert Notifier.take_from(env) == Notifier("\0notify")
    assert env == {"PATH": "/bin"}
    assert Notifier.take_from({}) == Notifier(None)


def test_without_systemd_nothing_is_sent() -> None:
    assert Notifier(None).ready("x") is False
