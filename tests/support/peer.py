"""A hand-driven peer for abuse tests: real sockets and TLS into a node's network namespace.

The tests' own process stays in the host's namespace; a socket opened by a thread that
entered a node's namespace (setns) stays in that namespace, so the test can talk to an agent
on the node's private address without a helper process. :class:`Peer` speaks the wire
protocol with no state machine of its own, so it can send what a real controller never would.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import socket
import ssl
import struct
import threading
from pathlib import Path

from ferryman import wire
from ferryman.wire.framing import FrameDecoder, encode
from tests.support.netns import NETNS_DIR

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_socket(netns: str, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket that lives in network namespace ``netns``."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:  # setns moves only this thread, which ends right after
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            made.append(socket.socket(family, socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the caller's thread
            made.append(exc)

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


def connect(netns: str, host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A plain TCP connection from inside ``netns``."""
    s = netns_socket(netns)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def client_context(pki: Path, name: str) -> ssl.SSLContext:
    """TLS 1.3 with node certificate ``name``; the server is not verified (we are the attacker
    of the server, not its victim)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(pki / f"{name}.pem"), str(pki / f"{name}.key"))
    return ctx


class Peer:
    """One TLS session with an agent; ``recv`` returns None once the agent closed it."""

    def __init__(self, netns: str, host: str, port: int, pki: Path, name: str = "a",
                 timeout: float = 20.0) -> None:
        raw = connect(netns, host, port, timeout)
        self.sock = client_context(pki, name).wrap_socket(raw, server_hostname=host)
        self.decoder = FrameDecoder()

    def send(self, msg: wire.Message) -> None:
        self.sock.sendall(encode(msg))

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float = 20.0) -> wire.Message | None:
        self.sock.settimeout(timeout)
        while (msg := self.decoder.maybe_message()) is None:
            try:
                data = self.sock.recv(1 << 20)
            except (ConnectionError, ssl.SSLError):
                return None
            if not data:
                return None
            self.decoder.receive_data(data)
        return msg

    def hello(self, node: str = "a", cpuinfo: bytes = b"") -> wire.Hello:
        self.send(wire.Hello(protocol_version=1, node=node, criu_version="4.2.1",
                             features={}, cpuinfo=cpuinfo, free_memory=1 << 30,
                             free_disk=1 << 30))
        theirs = self.recv()
        assert isinstance(theirs, wire.Hello), theirs
        return theirs

    def send_file(self, name: str, data: bytes) -> None:
        self.send(wire.FileChunk(name=name, offset=0, data=data))
        self.send(wire.FileEnd(name=name, size=len(data),
                               sha256=hashlib.sha256(data).hexdigest()))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_frame(header: dict[str, object], body: bytes = b"") -> bytes:
    """A frame as the wire lays it out (length, header length, JSON header, body), whatever
    its content: for frames a real peer never sends, or sends only in part."""
    head = json.dumps(header).encode()
    return struct.pack(">IH", 2 + len(head) + len(body), len(head)) + head + body


def open_fds(pid: int) -> list[str]:
    """Where each of ``pid``'s file descriptors points."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return out
