"""A TLS man in the middle between a real source and a real agent, changing what it passes on.

For faults no honest peer makes and TLS keeps off the wire (a corrupted image file): the proxy
listens in the agent's namespace with the agent's certificate, connects on to the real agent
from the source's namespace with the source's (so the agent sees the source's address, which
alone may reach its page server), decodes every message the source sends and passes on what
``tamper`` makes of it; the agent's answers go back unchanged. CRIU's page-server traffic goes
straight to the agent (the Ready names the agent's own port on the same address).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from ferryman import wire
from ferryman.wire.framing import FrameDecoder, encode
from tests.support.peer import client_context, connect, netns_socket

Tamper = Callable[[wire.Message], wire.Message]


class TamperProxy:
    def __init__(self, netns: str, host: str, port: int, upstream_port: int, pki: Path,
                 tamper: Tamper, *, source_netns: str, name: str = "b", client: str = "a"
                 ) -> None:
        self.source_netns, self.host, self.upstream_port = source_netns, host, upstream_port
        self.tamper = tamper
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.server_ctx.load_cert_chain(str(pki / f"{name}.pem"), str(pki / f"{name}.key"))
        self.client_ctx = client_context(pki, client)
        self.listener = netns_socket(netns)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen()
        self._open: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                down = self.server_ctx.wrap_socket(raw, server_side=True)
                up = self.client_ctx.wrap_socket(
                    connect(self.source_netns, self.host, self.upstream_port),
                    server_hostname=self.host)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            self._open += [down, up]
            threading.Thread(target=self._messages, args=(down, up), daemon=True).start()
            threading.Thread(target=self._bytes, args=(up, down), daemon=True).start()

    def _messages(self, src: ssl.SSLSocket, dst: ssl.SSLSocket) -> None:
        decoder = FrameDecoder()
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 20):
                decoder.receive_data(data)
                while (msg := decoder.maybe_message()) is not None:
                    dst.sendall(encode(self.tamper(msg)))
        _shut(dst)

    @staticmethod
    def _bytes(src: ssl.SSLSocket, dst: ssl.SSLSocket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 20):
                dst.sendall(data)
        _shut(dst)

    def close(self) -> None:
        for s in self._open:
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> TamperProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shut(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_WR)
