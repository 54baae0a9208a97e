"""Which named datagram sockets outside a tree its unix sockets are connected to.

A daemon that logs with syslog(3) holds a datagram socket connected to ``/dev/log``, which
journald (or rsyslog) owns, not the daemon. CRIU dumps such a connection only when told
``--ext-unix-sk`` and restores it by connecting a new socket to the same name (criu/sk-unix.c:
named datagram peers only; a stream connection to a process outside the tree cannot be
dumped at all). The restore then fails unless that name is bound on the destination, so the
pre-flight asks the destination about each of them (agent/preflight.py).

The peers come from the kernel's socket diagnostics (``NETLINK_SOCK_DIAG``, ``AF_UNIX``,
``UDIAG_SHOW_NAME | UDIAG_SHOW_PEER``; linux/unix_diag.h) of this network namespace, matched by
inode against the tree's sockets (host/inspect.py). The parser is pure.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

NETLINK_SOCK_DIAG: Final = 4
SOCK_DIAG_BY_FAMILY: Final = 20
NLM_F_REQUEST: Final = 0x1
NLM_F_DUMP: Final = 0x300
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
UDIAG_SHOW_NAME: Final = 0x1
UDIAG_SHOW_PEER: Final = 0x4
UNIX_DIAG_NAME: Final = 0
UNIX_DIAG_PEER: Final = 2

_NLMSGHDR: Final = struct.Struct("=IHHII")
_REQUEST: Final = struct.Struct("=BBHIII2I")  # struct unix_diag_req
_MESSAGE: Final = struct.Struct("=BBBBI2I")  # struct unix_diag_msg
_RTATTR: Final = struct.Struct("=HH")


@dataclass(frozen=True, slots=True)
class UnixSocket:
    inode: int
    type: int  # socket.SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET
    name: bytes  # as bound: b"" unbound, a leading NUL for an abstract name
    peer: int  # the peer's inode, 0 when not connected


def _align(n: int) -> int:
    return (n + 3) & ~3


def request(seq: int = 1) -> bytes:
    """A dump request for every unix socket of the namespace, with names and peers."""
    body = _REQUEST.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0,
                         UDIAG_SHOW_NAME | UDIAG_SHOW_PEER, 0xFFFFFFFF, 0xFFFFFFFF)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                          NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def parse(data: bytes) -> tuple[list[UnixSocket], bool]:
    """The sockets in one datagram of the kernel's answer, and whether the dump is done.
    Raises OSError for an error message, ValueError for a malformed one."""
    out: list[UnixSocket] = []
    at = 0
    while at + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, at)
        if length < _NLMSGHDR.size or at + length > len(data):
            raise ValueError(f"netlink message of {length} bytes at {at} of {len(data)}")
        body = data[at + _NLMSGHDR.size:at + length]
        at += _align(length)
        if kind == NLMSG_DONE:
            return out, True
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", body)
            if code:
                raise OSError(-code, os.strerror(-code))
            continue
        if kind != SOCK_DIAG_BY_FAMILY or len(body) < _MESSAGE.size:
            continue
        _family, stype, _state, _pad, inode, _c0, _c1 = _MESSAGE.unpack_from(body)
        name, peer = b"", 0
        for atype, value in _attributes(body[_MESSAGE.size:]):
            if atype == UNIX_DIAG_NAME:
                name = value
            elif atype == UNIX_DIAG_PEER and len(value) >= 4:
                (peer,) = struct.unpack_from("=I", value)
        out.append(UnixSocket(inode, stype, name, peer))
    return out, False


def _attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    at = 0
    while at + _RTATTR.size <= len(data):
        length, atype = _RTATTR.unpack_from(data, at)
        if length < _RTATTR.size:
            return
        yield atype, data[at + _RTATTR.size:at + length]
        at += _align(length)


def read_unix_sockets() -> dict[int, UnixSocket]:
    """Every unix socket of this network namespace, by inode."""
    sockets: dict[int, UnixSocket] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.sendall(request())
        while True:
            found, done = parse(nl.recv(1 << 16))
            sockets.update((s.inode, s) for s in found)
            if done:
                return sockets


def display_name(name: bytes) -> str:
    """A socket name as ferryman shows and sends it: a path, or ``@`` and an abstract name."""
    shown = b"@" + name[1:] if name.startswith(b"\0") else name.rstrip(b"\0")
    return shown.decode("utf-8", "surrogateescape")


def external_peers(tree: Iterable[int], sockets: Mapping[int, UnixSocket]) -> list[str]:
    """The names of the datagram sockets outside the tree (whose socket inodes are ``tree``)
    that the tree's sockets are connected to. Unnamed peers and stream connections are left
    to CRIU's own refusal, relative names to its restore."""
    mine = set(tree)
    out: list[str] = []
    for inode in sorted(mine):
        sk = sockets.get(inode)
        if sk is None or not sk.peer or sk.peer in mine:
            continue
        peer = sockets.get(sk.peer)
        if peer is None or peer.type != socket.SOCK_DGRAM or not peer.name:
            continue
        name = display_name(peer.name)
        if name.startswith(("/", "@")) and name not in out:  # relative: left to CRIU
            out.append(name)
    return out


def tree_external_peers(tree: Iterable[int]) -> list[str]:
    """:func:`external_peers` of this namespace's sockets; none when the kernel's socket
    diagnostics cannot be read (CRIU's dump still names the problem)."""
    try:
        return external_peers(tree, read_unix_sockets())
    except (OSError, ValueError):
        return []


def reachable(name: str) -> str | None:
    """None when a datagram socket here can connect to ``name`` (a path, or ``@`` and an
    abstract name) as CRIU's restore will; otherwise why not."""
    address: str | bytes = ("\0" + name[1:]).encode("utf-8", "surrogateescape") \
        if name.startswith("@") else name
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sk:
        try:
            sk.connect(address)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return "no such socket"
            if exc.errno == errno.ECONNREFUSED:
                return "nothing is bound to it"
            if exc.errno == errno.EPROTOTYPE:
                return "it is not a datagram socket"
            return exc.strerror or str(exc)
    return None
