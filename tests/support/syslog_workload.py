"""A daemon that logs through syslog, as most do: the standard library's SysLogHandler keeps
a datagram socket connected to the log socket, which another process owns (journald's
/dev/log on a systemd host).

    python syslog_workload.py --address /dev/log|@abstract [--interval S]

Every ``interval`` seconds it logs ``beat N`` (N counting up from 1).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--interval", type=float, default=0.05)
    a = ap.parse_args()
    address = "\0" + a.address[1:] if a.address.startswith("@") else a.address
    handler = logging.handlers.SysLogHandler(address=address)  # connects at once
    log = logging.getLogger("beats")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    beat = 0
    while True:
        beat += 1
        log.info("beat %d", beat)
        time.sleep(a.interval)


if __name__ == "__main__":
    main()
