"""The sock_diag answer parser and the choice of external datagram peers (pure)."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from ferryman.host.unix_peers import (
    NLMSG_DONE,
    NLMSG_ERROR,
    SOCK_DIAG_BY_FAMILY,
    UNIX_DIAG_NAME,
    UNIX_DIAG_PEER,
    UnixSocket,
    display_name,
    external_peers,
    parse,
    request,
)


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _message(kind: int, body: bytes) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(body), kind, 2, 1, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def _socket(inode: int, stype: int, name: bytes = b"", peer: int = 0) -> bytes:
    body = struct.pack("=BBBBI2I", socket.AF_UNIX, stype, 1, 0, inode, 0, 0)
    if name:
        body += _attr(UNIX_DIAG_NAME, name)
    if peer:
        body += _attr(UNIX_DIAG_PEER, struct.pack("=I", peer))
    return _message(SOCK_DIAG_BY_FAMILY, body)


def test_a_dump_is_parsed_up_to_its_end() -> None:
    data = (_socket(10, socket.SOCK_DGRAM, b"/dev/log") + _socket(11, socket.SOCK_DGRAM, peer=10)
            + _socket(12, socket.SOCK_STREAM, b"\0abstract") + _message(NLMSG_DONE, b"\0" * 4))
    found, done = parse(data)
    assert done
    assert found == [UnixSocket(10, socket.SOCK_DGRAM, b"/dev/log", 0),
                     UnixSocket(11, socket.SOCK_DGRAM, b"", 10),
                     UnixSocket(12, socket.SOCK_STREAM, b"\0abstract", 0)]


def test_a_part_of_a_dump_is_not_its_end() -> None:
    assert parse(_socket(1, socket.SOCK_DGRAM)) == ([UnixSocket(1, socket.SOCK_DGRAM, b"", 0)],
                                                     False)


def test_an_error_message_is_an_oserror() -> None:
    with pytest.raises(OSError) as err:
        parse(_message(NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + b"\0" * 16))
    assert err.value.errno == errno.EPERM


def test_a_truncated_message_is_refused() -> None:
    with pytest.raises(ValueError):
        parse(_socket(1, socket.SOCK_DGRAM, b"/dev/log")[:-6])


def test_the_request_asks_a_dump_of_every_unix_socket_with_names_and_peers() -> None:
    raw = request()
    length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", raw)
    family, _proto, _pad, states, ino, show = struct.unpack_from("=BBHIII", raw, 16)
    assert (length, kind, flags & 0x300) == (len(raw), SOCK_DIAG_BY_FAMILY, 0x300)
    assert (family, states, ino, show) == (socket.AF_UNIX, 0xFFFFFFFF, 0, 0x1 | 0x4)


def test_names_are_paths_or_at_and_an_abstract_name() -> None:
    assert display_name(b"/dev/log\0") == "/dev/log"
    assert display_name(b"\0journal\0") == "@journal\0"
    assert display_name(b"/tmp/\xff") == "/tmp/\udcff"


SOCKETS = {s.inode: s for s in [
    UnixSocket(1, socket.SOCK_DGRAM, b"/dev/log", 0),  # journald's, outside the tree
    UnixSocket(2, socket.SOCK_DGRAM, b"", 1),  # the tree's syslog socket
    UnixSocket(3, socket.SOCK_DGRAM, b"", 1),  # a second one to the same name
    UnixSocket(4, socket.SOCK_STREAM, b"/run/db.sock", 0),  # a server outside the tree
    UnixSocket(5, socket.SOCK_STREAM, b"", 4),  # the tree's stream client: CRIU refuses it
    UnixSocket(6, socket.SOCK_DGRAM, b"/run/inner", 0),  # the tree's own server ...
    UnixSocket(7, socket.SOCK_DGRAM, b"", 6),  # ... and its own client
    UnixSocket(8, socket.SOCK_DGRAM, b"", 0),  # unnamed peer: CRIU refuses it
    UnixSocket(9, socket.SOCK_DGRAM, b"", 8),
    UnixSocket(10, socket.SOCK_DGRAM, b"\0abstract", 0),
    UnixSocket(11, socket.SOCK_DGRAM, b"", 10),
    UnixSocket(12, socket.SOCK_DGRAM, b"relative.sock", 0),
    UnixSocket(13, socket.SOCK_DGRAM, b"", 12),
    UnixSocket(14, socket.SOCK_DGRAM, b"", 99),  # a peer gone meanwhile
]}


def test_only_named_datagram_peers_outside_the_tree_are_external() -> None:
    tree = [2, 3, 5, 6, 7, 9, 11, 13, 14]
    assert external_peers(tree, SOCKETS) == ["/dev/log", "@abstract"]


def test_a_tree_without_unix_sockets_has_none() -> None:
    assert external_peers([], SOCKETS) == []
