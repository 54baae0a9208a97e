"""rsync's "remote shell" for ferryman: relay rsync's protocol over mutual TLS.

Run by rsync (``--rsh``), never by hand:
``python -I -S tunnel.py --dead-link I,I,C,MS --port P --ca CA --cert CERT --key KEY HOST
rsync --server ...``. Connects to the destination agent's sync listener on HOST:P with this
node's certificate (TLS 1.3, the server's certificate checked against HOST), its socket
bounded like the control channel's (``--dead-link``, host/deadlink.py: a cut link ends this
program within about 5 s, and with it our rsync), sends the remote command rsync
asked for as one JSON line, then relays stdin to the connection and the connection to stdout
until the destination closes it. What comes back is framed (a channel byte, 1 for rsync's
stdout, 2 for its stderr, and a 4-byte length), so that the remote rsync's error messages
reach our rsync's stderr as they would through ssh. Standard library only, so that it starts
fast (it runs in the frozen window of a migration).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import selectors
import socket
import ssl
import struct
import sys

CHUNK = 1 << 16
MAX_BUFFER = 4 << 20
FRAME = struct.Struct(">BI")  # channel (1 stdout, 2 stderr), length


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:  # stdout may share a non-blocking socketpair with stdin
            select.select([], [fd], [])
            continue
        view = view[n:]


def _dead_link(text: str) -> tuple[int, int, int, int]:
    """``--dead-link IDLE,INTVL,CNT,USER_MS`` (host/deadlink.py's bound, which the caller
    passes: this program imports nothing of ferryman's)."""
    try:
        idle, intvl, cnt, user_ms = (int(w) for w in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"want IDLE,INTVL,CNT,USER_MS, got {text!r}") from exc
    return idle, intvl, cnt, user_ms


def _bound(sock: socket.socket, dead_link: tuple[int, int, int, int]) -> None:
    """Keepalive and TCP_USER_TIMEOUT, set before the connect: a cut link fails the connect,
    the handshake and every later wait within the bound, not after the kernel's SYN retries
    or retransmissions (or never, for a wait for data the peer had sent into the cut)."""
    idle, intvl, cnt, user_ms = dead_link
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_ms)


def _connect(host: str, port: int, ca: str, cert: str, key: str, *,
             dead_link: tuple[int, int, int, int]) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    raw = socket.socket(family, kind, proto)
    try:
        _bound(raw, dead_link)
        raw.settimeout(30)  # the connect and the handshake, however slow the peer
        raw.connect(addr)
        # a dead link (the bound's ETIMEDOUT) reaches Python as an EOF without TLS's
        # close_notify: an error, not the end of rsync's stream (the listener always closes
        # with close_notify)
        sock = ctx.wrap_socket(raw, server_hostname=host, suppress_ragged_eofs=False)
    except BaseException:
        raw.close()
        raise
    sock.settimeout(None)
    return sock


def relay(sock: ssl.SSLSocket, first: bytes) -> None:
    """stdin -> sock and sock -> stdout, until the peer closes."""
    sock.setblocking(False)
    os.set_blocking(0, False)
    out = bytearray(first)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "sock")
    stdin_eof = reading = False
    inbox = bytearray()
    while True:
        while out:
            try:
                n = sock.send(out[:CHUNK])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                break
            del out[:n]
        sel.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0), "sock")
        want_stdin = not stdin_eof and len(out) <= MAX_BUFFER
        if want_stdin != reading:
            if want_stdin:
                sel.register(0, selectors.EVENT_READ, "stdin")
            else:
                sel.unregister(0)
            reading = want_stdin
        for key, _ in sel.select():
            if key.data == "stdin":
                try:
                    data = os.read(0, CHUNK)
                except ConnectionResetError:
                    data = b""
                if data:
                    out += data
                else:
                    stdin_eof = True
            else:
                while True:
                    try:
                        data = sock.recv(CHUNK)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        break
                    if not data:
                        return
                    inbox += data
                    _deliver(inbox)


def _deliver(inbox: bytearray) -> None:
    """Write out every complete frame in ``inbox`` (to fd 1 or 2) and drop it.

    Once our rsync has gone (it exits as soon as it learns of a remote error), what is still
    meant for it is dropped, but the remote's error messages still reach stderr.
    """
    while len(inbox) >= FRAME.size:
        channel, length = FRAME.unpack_from(inbox)
        end = FRAME.size + length
        if len(inbox) < end:
            return
        try:
            _write_all(2 if channel == 2 else 1, bytes(inbox[FRAME.size:end]))
        except BrokenPipeError:
            if channel == 2:
                raise
        del inbox[:end]


def _read_line(sock: ssl.SSLSocket) -> bytes:
    """The listener's one-line answer, read byte by byte (rsync's data follows it)."""
    line = bytearray()
    while len(line) < 4096:
        b = sock.recv(1)
        if not b or b == b"\n":
            break
        line += b
    return bytes(line)


def main() -> int:
    ap = argparse.ArgumentParser(prog="ferryman-rsync-tunnel")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--dead-link", type=_dead_link, required=True)
    ap.add_argument("host")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    try:
        sock = _connect(args.host, args.port, args.ca, args.cert, args.key,
                        dead_link=args.dead_link)
    except (OSError, ssl.SSLError) as exc:
        print(f"ferryman: cannot reach the sync listener at {args.host}:{args.port}: {exc}",
              file=sys.stderr)
        return 12
    try:
        sock.sendall(json.dumps(args.command).encode() + b"\n")
        answer = _read_line(sock)
        if answer != b"OK":
            reason = answer.decode(errors="replace").removeprefix("ERR ").strip()
            print(f"ferryman: the destination refused the sync: {reason or 'closed'}",
                  file=sys.stderr)
            return 12
        relay(sock, b"")
    except ssl.SSLEOFError:
        print(f"ferryman: sync connection to {args.host} broke: it ended without TLS's "
              f"close (reset, or no answer within {args.dead_link[3] / 1000:g} s: a dead link)",
              file=sys.stderr)
        return 12
    except (OSError, ssl.SSLError) as exc:
        print(f"ferryman: sync connection to {args.host} broke: {exc}", file=sys.stderr)
        return 12
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
