"""S3: a TCP echo server on the service address, a client in node C every 10 ms; migrate it.

One run: the service address (``env.service``, e.g. 10.77.0.100/24) goes onto A's eth0; the
echo server (tests/support/echo.py, in its own PID namespace) listens on it; the client
(bench/echoclient.py) connects from C and sends a numbered line every 10 ms, waiting for
each answer. After 0.5 s the server is migrated to B with its live connection and its
address (ferryman: ``--tcp-established --move-address``; by hand: bench/baseline.py with
``tcp=True``). The client talks for another second after the migration returned, then is
stopped; the run fails unless the connection survived (no error, no wrong answer, answers
after the gap), the address is on B and not on A. Downtime = the client's longest gap
between two answers; the server has no heartbeat of its own.

Every run starts and ends with clean nodes: the address off A and B, neighbour caches
flushed (or C would go on talking to a stale MAC), CRIU's leftover network-lock tables
(``inet CRIU-*``, which a successful dump leaves on the source) removed.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.support.netns import Node
from tests.support.workloads import Workload, alive, children

from bench.cell import Cell, RunResult, migrator
from bench.env import Env
from bench.proc import PY, REPO, BenchError, kill_pid, rss_bytes, say, stop, wait_gone
from bench.stats import criu_ms

ECHO = REPO / "tests" / "support" / "echo.py"
CLIENT = REPO / "bench" / "echoclient.py"
PORT = 7000
INTERVAL_MS = 10
WARMUP_S = 0.5  # the client talks this long before the migration starts
AFTER_S = 1.0  # and this long after it returned
MIN_AFTER = 20  # answers after the longest gap, at least: the connection survived


def _nodes(env: Env) -> list[Node]:
    return list(env.topo.nodes.values())


def has_address(node: Node, ip: str, dev: str) -> bool:
    return f"inet {ip}/" in node.run("ip", "-4", "addr", "show", "dev", dev).stdout


def reset_network(env: Env) -> None:
    """Service address off A and B, neighbour caches flushed, CRIU's lock tables gone."""
    assert env.service is not None
    for node in _nodes(env):
        node.run("ip", "addr", "del", env.service, "dev", env.dev, check=False)
        node.run("ip", "neigh", "flush", "dev", env.dev, check=False)
        for line in node.run("nft", "list", "tables", check=False).stdout.splitlines():
            words = line.split()  # "table inet CRIU-…"
            if len(words) == 3 and words[0] == "table" and words[2].startswith("CRIU-"):
                node.run("nft", "delete", "table", words[1], words[2], check=False)


def _server_script(env: Env) -> Path:
    """echo.py copied into the temp dir: its path in the server's argv marks it ours for the
    cleanup sweep (also the restored server on B)."""
    path = env.tmp / "echo.py"
    if not path.exists():
        shutil.copy(ECHO, path)
    return path


def _wait_connected(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while b"connected" not in log.read_bytes():
        if proc.poll() is not None:
            raise BenchError(f"echo client exited with {proc.returncode}: "
                             f"{log.read_text(errors='replace').strip()[-300:]}")
        if time.monotonic() > deadline:
            raise BenchError("echo client did not connect")
        time.sleep(0.01)


def _stop_client(proc: subprocess.Popen[bytes], out: Path, timeout: float) -> dict[str, object]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError("echo client did not stop") from exc
    if not out.exists():
        raise BenchError(f"echo client wrote no result (exit {proc.returncode})")
    result: dict[str, object] = json.loads(out.read_text())
    return result


def _number(result: dict[str, object], key: str) -> float:
    v = result.get(key)
    if not isinstance(v, int | float):
        raise BenchError(f"echo client result has no {key}: {result}")
    return float(v)


def measure(env: Env, cell: Cell, tool: str, rep: int) -> RunResult:
    """One migration of a fresh echo server, with a client talking to it, from A to B."""
    r = RunResult(cell.mode, None, tool, rep, cell.label)
    run_dir = env.tmp / f"echo-{cell.migration}-{rep}-{tool}"
    run_dir.mkdir()
    if env.service is None:
        raise BenchError("no service address configured")
    a, b, c = env.topo["a"], env.topo["b"], env.topo["c"]
    ip = env.service.split("/", 1)[0]
    restored: list[int] = []
    launcher: subprocess.Popen[bytes] | None = None
    client: subprocess.Popen[bytes] | None = None
    pid = 0
    try:
        reset_network(env)
        a.run("ip", "addr", "add", env.service, "dev", env.dev)
        launcher = a.popen("unshare", "-p", "-f", "setsid", PY, str(_server_script(env)),
                           "serve", "--bind", f"{ip}:{PORT}", stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        a.wait_listening(PORT, timeout=min(env.timeout, 60), proc=launcher)
        kids = children(launcher.pid)
        if not kids:
            raise BenchError("echo server: no process under its launcher")
        pid = kids[0]
        r.rss_bytes = rss_bytes(pid)
        out_path, log_path = run_dir / "client.json", run_dir / "client.log"
        with log_path.open("wb") as log:
            client = c.popen(PY, str(CLIENT), "--to", f"{ip}:{PORT}", "--interval-ms",
                             str(INTERVAL_MS), "--out", str(out_path),
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _wait_connected(client, log_path, min(env.timeout, 30))
        time.sleep(WARMUP_S)
        wl = Workload(pid=pid, status_path=run_dir / "no-status", launcher=launcher)
        t_start = time.time()
        out = migrator(cell, tool)(env, wl, run_dir, restored)
        t_done = time.time()
        new_pid = restored[-1]
        if not alive(new_pid):
            raise BenchError(f"restored echo server PID {new_pid} is not running")
        if client.poll() is not None:
            raise BenchError(f"the client stopped during the migration: "
                             f"{log_path.read_text(errors='replace').strip()[-300:]}")
        time.sleep(AFTER_S)
        res = _stop_client(client, out_path, 30)
        if res.get("error"):
            raise BenchError(f"the client's connection broke: {res['error']}")
        if _number(res, "bad"):
            raise BenchError(f"wrong answers: {res}")
        after = _number(res, "answered_after_max_gap")
        if after < MIN_AFTER:
            raise BenchError(f"only {after:.0f} answers after the longest gap: {res}")
        if not has_address(b, ip, env.dev) or has_address(a, ip, env.dev):
            raise BenchError(f"{ip} is not (only) on B after the migration")
        gap = _number(res, "max_gap_ms")
        gap_end = res.get("max_gap_end")
        r.downtime_ms = gap
        r.total_ms = out.total_ms
        r.memory_complete_ms = out.memory_complete_ms
        r.bytes_moved = out.bytes_moved
        r.details = {
            "client_gap_ms": gap,
            # when the longest gap ended, from the migration's start (wall clock, same host)
            "client_gap_end_ms": ((gap_end - t_start) * 1000
                                  if isinstance(gap_end, int | float) else None),
            "migration_wall_ms": (t_done - t_start) * 1000,
            "client_sent": res.get("sent"),
            "client_answered": res.get("answered"),
            "client_answered_after_gap": after,
            **out.details,
        }
        if cell.migration == "cold":  # CRIU's lazy-mode stats-dump is garbage (DESIGN.md)
            r.details.update(criu_ms(out.details.get("criu_dump")))
        r.ok = True
    except Exception as exc:
        r.error = f"{type(exc).__name__}: {exc}"
        say(f"  !! {cell.mode} {cell.label} run {rep} {tool} FAILED: {r.error}")
    finally:
        if client is not None:
            stop(client)
        for p in (*restored, *([pid] if pid else [])):
            kill_pid(p)
        if launcher is not None:
            stop(launcher)
        wait_gone([*restored, *([pid] if pid else [])])
        reset_network(env)
    return r
