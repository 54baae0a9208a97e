"""S3: a TCP echo server on the service address, a client in node C every 10 ms; migrate it.

The run itself is bench/service.py's skeleton. The server is the echo server of the
integration tests (tests/support/echo.py) in its own PID namespace on A (:class:`EchoProcess`,
mode ``echo``), or the same service as a runc container (bench/runcbox.py, mode
``runc-echo``); the client (bench/echoclient.py) connects from C and sends a numbered line
every 10 ms, waiting for each answer. After 0.5 s the server is migrated to B with its live
connection and its address (ferryman: ``--tcp-established --move-address``; by hand:
bench/baseline.py with ``tcp=True``, or bench/baseline_runc.py). The client talks for
another second after the migration returned; the run fails unless the connection survived
(no error, no wrong answer, answers after the gap) and the address is on B only. Downtime =
the client's longest gap between two answers; the server has no heartbeat of its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.cell import Cell, migrator
from bench.env import Env, Outcome
from bench.proc import PY, REPO, BenchError
from bench.service import Move, Server, Window, bind, launch, number

ECHO = REPO / "tests" / "support" / "echo.py"
CLIENT = REPO / "bench" / "echoclient.py"
PORT = 7000
INTERVAL_MS = 10
MIN_AFTER = 20  # answers after the longest gap, at least: the connection survived


class EchoClient:
    """The client side, shared by the process and the container echo server."""

    what = "echo server"
    warmup_s = 0.5
    after_s = 1.0

    def client_argv(self, env: Env, ip: str, out: Path, rep: int) -> list[str]:
        del env, rep
        return [PY, str(CLIENT), "--to", f"{ip}:{PORT}", "--interval-ms", str(INTERVAL_MS),
                "--out", str(out)]

    def judge(self, env: Env, ip: str, result: dict[str, object], when: Window,
              out: Outcome) -> dict[str, Any]:
        del env, ip, when, out
        after = number(result, "answered_after_max_gap")
        if after < MIN_AFTER:
            raise BenchError(f"only {after:.0f} answers after the longest gap: {result}")
        return {"client_sent": result.get("sent"), "client_answered": result.get("answered"),
                "client_answered_after_gap": after}


def _server_script(env: Env) -> Path:
    """echo.py copied into the temp dir: its path in the server's argv marks it ours for the
    cleanup sweep (also the restored server on B)."""
    path = env.tmp / "echo.py"
    if not path.exists():
        shutil.copy(ECHO, path)
    return path


class EchoProcess(EchoClient):
    """S3's echo server as a process (tests/support/echo.py) in its own PID namespace."""

    def start(self, env: Env, run_dir: Path, ip: str, rep: int) -> Server:
        del run_dir, rep
        return launch(env, [PY, str(_server_script(env)), "serve", "--bind", f"{ip}:{PORT}"],
                      PORT, self.what)

    def move(self, cell: Cell, tool: str, server: Server) -> Move:
        return bind(migrator(cell, tool), server)

