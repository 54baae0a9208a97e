"""bench/echoclient.py against tests/support/echo.py on loopback: the longest gap it sees."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).parents[3]
ECHO = ROOT / "tests" / "support" / "echo.py"
CLIENT = ROOT / "bench" / "echoclient.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, ok: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def test_client_measures_a_pause_of_the_server_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(ECHO), "serve", "--bind",
                               f"127.0.0.1:{port}"])
    out, log = tmp_path / "client.json", tmp_path / "client.log"
    client = None
    try:
        _wait("server listens", lambda: _listening(port))
        with log.open("wb") as fh:
            client = subprocess.Popen([sys.executable, str(CLIENT), "--to", f"127.0.0.1:{port}",
                                       "--interval-ms", "10", "--out", str(out)],
                                      stdout=fh, stderr=fh)
        _wait("client connects", lambda: b"connected" in log.read_bytes())
        time.sleep(0.2)
        os.kill(server.pid, signal.SIGSTOP)
        paused = time.time()
        time.sleep(0.3)
        os.kill(server.pid, signal.SIGCONT)
        time.sleep(0.3)
        client.send_signal(signal.SIGTERM)
        assert client.wait(10) == 0
        res = json.loads(out.read_text())
        assert res["error"] is None
        assert res["stopped"] is True
        assert res["bad"] == 0
        assert 280 <= res["max_gap_ms"] < 1000
        assert res["max_gap_end"] > paused
        assert res["answered_after_max_gap"] >= 5
        assert res["answered"] >= res["sent"] - 1
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        os.kill(server.pid, signal.SIGCONT)
        server.kill()
        server.wait(5)
