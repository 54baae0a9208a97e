"""``--probe tcp:IP:PORT``: the downtime a client of the moving service sees.

The probe is one TCP connection to the service, kept across the migration: it sends
``PING\\r\\n``, waits for one line back (an echo server repeats it, redis answers ``+PONG``),
sleeps ``interval`` and sends again, and records the longest gap between two answers. It runs
in a thread of its own, so the controller's work never shows up as a gap; it keeps going after
the migration until the service has answered a few times more (or ``settle`` runs out).

Its connection is one of the workload's connections, so it moves with ``--tcp-established``.
When the service address moves too (``--move-address``) and is still local here, the probe
binds to another address of that device: a connection from the moving address to itself
could not survive the move.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from ferryman.errors import ProbeError, UsageError
from ferryman.host.addresses import MoveAddress

REQUEST = b"PING\r\n"
MAX_LINE = 64 << 10
CONNECT_TIMEOUT = 5.0
SETTLE_ANSWERS = 3


@dataclass
class ProbeReport:
    """What a client of the service saw (``--probe``): its longest wait for an answer.
    Part of the migration report (:class:`ferryman.migration.report.MigrationReport`)."""

    target: str
    source: str  # the address probed from ("" when the kernel chose)
    sent: int
    answered: int
    max_gap_ms: float
    max_gap_start_ms: float  # since the migration started, as ``phases`` count
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    host: str
    port: int

    def __str__(self) -> str:
        return f"tcp:{self.host}:{self.port}"


def parse_probe(text: str) -> ProbeTarget:
    """``tcp:10.0.0.100:7000`` -> ProbeTarget (IPv4; the only kind so far)."""
    kind, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host:
        raise UsageError(f"bad --probe {text!r}", hint="write it as tcp:IP:PORT, "
                         "e.g. tcp:10.0.0.100:7000")
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError as exc:
        raise UsageError(f"bad IPv4 address {host!r} in --probe", hint="e.g. "
                         "tcp:10.0.0.100:7000") from exc
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"bad port {port!r} in --probe", hint="a port is 1 to 65535")
    return ProbeTarget(str(ip), int(port))


def pick_source(addr_json: str, avoid: str) -> str | None:
    """From ``ip -j -4 addr show dev DEV``: the first IPv4 address that is not ``avoid``."""
    for link in json.loads(addr_json or "[]"):
        for info in link.get("addr_info", []):
            ip = info.get("local")
            if info.get("family") == "inet" and ip and ip != avoid:
                return str(ip)
    return None


def source_for(target: ProbeTarget, moving: MoveAddress | None) -> str | None:
    """The address to probe from, or None to let the kernel choose (see the module doc)."""
    if moving is None or moving.ip != target.host:
        return None
    res = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", moving.dev],
                         capture_output=True, text=True, check=False)
    ip = pick_source(res.stdout, moving.ip) if res.returncode == 0 else None
    if ip is None:
        raise ProbeError(str(target), f"{moving.dev} has no address but {moving.ip} to probe "
                         "from, and a connection from the moving address to itself cannot "
                         "move", hint=f"give {moving.dev} an address of its own")
    return ip


@dataclass
class GapMeter:
    """The longest silence between answers. Pure: it is fed monotonic times."""

    start: float
    last: float = 0.0
    longest: float = 0.0
    longest_at: float = 0.0

    def __post_init__(self) -> None:
        self.last = self.start
        self.longest_at = self.start

    def answer(self, at: float) -> None:
        if at - self.last > self.longest:
            self.longest, self.longest_at = at - self.last, self.last
        self.last = at


class TcpProbe:
    """One connection to the service, probed from a thread; see the module doc."""

    def __init__(self, target: ProbeTarget, *, source: str | None = None,
                 interval: float = 0.010, settle: float = 5.0) -> None:
        self.target = target
        self.source = source
        self.interval = interval
        self.settle = settle
        self.sent = 0
        self.answered = 0
        self.error: str | None = None
        self._sock: socket.socket | None = None
        self._meter = GapMeter(time.monotonic())
        self._finish_at: float | None = None
        self._after_finish = 0
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> None:
        """Connect and answer once (ProbeError if not), then probe in the background."""
        try:
            sock = socket.create_connection(
                (self.target.host, self.target.port), timeout=CONNECT_TIMEOUT,
                source_address=(self.source, 0) if self.source else None)
        except OSError as exc:
            raise ProbeError(str(self.target), f"cannot connect: {exc.strerror or exc}"
                             ) from exc
        self._sock = sock
        sock.settimeout(0.1)
        try:
            self._ask(first=True)
        except OSError as exc:
            sock.close()
            raise ProbeError(str(self.target), f"no answer to {REQUEST!r}: "
                             f"{exc.strerror or exc}") from exc
        self._meter = GapMeter(time.monotonic())
        self._thread.start()

    def stop(self, t0: float) -> ProbeReport:
        """Wait for the service to answer after the migration, then close; the result, its
        times in ms since ``t0`` (the migration's start, monotonic)."""
        self._finish_at = time.monotonic()
        if self._thread.is_alive():
            self._thread.join(self.settle + 1.0)
        end = time.monotonic()
        if self.sent > self.answered:  # the last request never came back: that gap counts
            silent = end - self._meter.last
            self._meter.answer(end)
            if self.error is None:
                self.error = f"no answer in the last {silent:.1f} s"
        if self._sock is not None:
            self._sock.close()
        return ProbeReport(target=str(self.target), source=self.source or "",
                           sent=self.sent, answered=self.answered,
                           max_gap_ms=self._meter.longest * 1000,
                           max_gap_start_ms=(self._meter.longest_at - t0) * 1000,
                           error=self.error)

    def _done(self) -> bool:
        if self._finish_at is None:
            return False
        return (self._after_finish >= SETTLE_ANSWERS
                or time.monotonic() > self._finish_at + self.settle)

    def _run(self) -> None:
        try:
            while not self._done():
                if not self._ask():
                    return
                self._meter.answer(time.monotonic())
                if self._finish_at is not None:
                    self._after_finish += 1
                time.sleep(self.interval)
        except OSError as exc:
            self.error = f"the connection broke: {exc.strerror or exc}"

    def _ask(self, *, first: bool = False) -> bool:
        """Send one request and wait for its line; False when told to stop first."""
        assert self._sock is not None
        self._sock.sendall(REQUEST)
        self.sent += 1
        buf = b""
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while not buf.endswith(b"\n"):
            if first and time.monotonic() > deadline:
                raise TimeoutError("timed out")
            if not first and self._done():
                return False
            try:
                chunk = self._sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionResetError("the service closed the connection")
            buf += chunk
            if len(buf) > MAX_LINE:
                raise ConnectionError("the answer is not a line")
        self.answered += 1
        return True
