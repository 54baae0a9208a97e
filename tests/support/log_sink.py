"""A log socket's owner (what journald is to /dev/log): binds a datagram socket and appends
every datagram it gets, one a line, to a file.

    python log_sink.py --address PATH|@abstract --out FILE

It writes ``ready`` to FILE once bound.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    address = "\0" + a.address[1:] if a.address.startswith("@") else a.address
    sk = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sk.bind(address)
    with a.out.open("a", buffering=1) as out:
        out.write("ready\n")
        while True:
            out.write(sk.recv(65536).decode(errors="replace").replace("\n", " ") + "\n")


if __name__ == "__main__":
    main()
