"""One skeleton for every service migration with live clients (S2 redis, S3 echo, S3 runc echo).

A run: the service address (``env.service``) goes onto A's eth0; the :class:`Service`
starts its server on A and prepares it; its client starts in node C and must say
"connected"; after the service's warm-up the server is migrated A → B with its live
connections and its address (ferryman: ``--tcp-established --move-address``; by hand: the
commands typed out); the client goes on for the service's after-time, then is stopped
(SIGTERM) and writes its result JSON. The run fails unless the restored server runs, the
client kept talking without an error or a wrong answer, the service's own checks pass and
the address is on B only. Downtime = the client's longest gap (``max_gap_ms``).

Every run starts and ends with clean nodes (:func:`reset_network`): the address off A and B,
neighbour caches flushed (or C would go on talking to a stale MAC), CRIU's leftover
network-lock tables (``inet CRIU-*``, which a successful dump leaves on the source) removed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.support.netns import Node
from tests.support.workloads import Workload, alive, children

from bench.cell import Cell, RunResult
from bench.env import Env, Migrator, Outcome
from bench.proc import REPO, BenchError, kill_pid, rss_bytes, stop, wait_gone, wait_ready

# A migrator with its workload bound: (env, run_dir, restored PIDs) -> Outcome.
Move = Callable[[Env, Path, list[int]], Outcome]


@dataclass
class Server:
    """A server started on A: its process (the workload), and how to end it for good."""

    pid: int
    stop: Callable[[], None]  # ends what the start left behind (launcher, container, …)
    details: dict[str, Any] = field(default_factory=dict)  # measured while preparing it
    launcher: subprocess.Popen[bytes] | None = None  # a process server's `unshare` parent


@dataclass(frozen=True)
class Window:
    """When the migration started and returned and the client was stopped (time.time())."""

    start: float
    done: float
    stop: float


class Service(Protocol):
    """What differs between the services; everything else is :func:`measure`."""

    what: str  # "echo server", "redis-server", … (messages)
    warmup_s: float  # the client talks this long before the migration starts
    after_s: float  # and this long after it returned

    def start(self, env: Env, run_dir: Path, ip: str, rep: int) -> Server:
        """Start (and prepare) the server on A, listening on ``ip``."""
        ...

    def client_argv(self, env: Env, ip: str, out: Path, rep: int) -> list[str]:
        """The client's command line in node C; it writes its result JSON to ``out``."""
        ...

    def move(self, cell: Cell, tool: str, server: Server) -> Move:
        """Who moves ``server`` for ``tool``."""
        ...

    def judge(self, env: Env, ip: str, result: dict[str, object], when: Window,
              out: Outcome) -> dict[str, Any]:
        """Check the client's result (and the server on B) beyond the common checks;
        raise BenchError on failure; return the run's details."""
        ...


def launch(env: Env, argv: list[str], port: int, what: str) -> Server:
    """``unshare -p -f setsid ARGV`` on A (a PID namespace of its own, so that B can restore
    the same PIDs on this one host), once it listens on ``port``."""
    a = env.topo["a"]
    launcher = a.popen("unshare", "-p", "-f", "setsid", *argv, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        a.wait_listening(port, timeout=min(env.timeout, 60), proc=launcher)
        kids = children(launcher.pid)
        if not kids:
            raise BenchError(f"{what}: no process under its launcher")
    except BaseException:
        stop(launcher)
        raise
    pid = kids[0]

    def end() -> None:
        kill_pid(pid)
        stop(launcher)
    return Server(pid, end, launcher=launcher)


def bind(move: Migrator, server: Server) -> Move:
    """A process migrator (bench.cell.migrator) with ``server``'s process bound to it."""
    if server.launcher is None:
        raise BenchError("not a process server: nothing to bind a process migrator to")
    wl = Workload(pid=server.pid, status_path=Path("/nonexistent/no-status"),
                  launcher=server.launcher)

    def moved(env: Env, run_dir: Path, restored: list[int]) -> Outcome:
        return move(env, wl, run_dir, restored)
    return moved


def has_address(node: Node, ip: str, dev: str) -> bool:
    return f"inet {ip}/" in node.run("ip", "-4", "addr", "show", "dev", dev).stdout


def reset_network(env: Env) -> None:
    """Service address off A and B, neighbour caches flushed, CRIU's lock tables gone."""
    assert env.service is not None
    for node in env.topo.nodes.values():
        node.run("ip", "addr", "del", env.service, "dev", env.dev, check=False)
        node.run("ip", "neigh", "flush", "dev", env.dev, check=False)
        for line in node.run("nft", "list", "tables", check=False).stdout.splitlines():
            words = line.split()  # "table inet CRIU-…"
            if len(words) == 3 and words[0] == "table" and words[2].startswith("CRIU-"):
                node.run("nft", "delete", "table", words[1], words[2], check=False)


def number(result: dict[str, object], key: str, what: str = "client") -> float:
    v = result.get(key)
    if not isinstance(v, int | float):
        raise BenchError(f"{what} result has no {key}: {result}")
    return float(v)


def _stop_client(proc: subprocess.Popen[bytes], out: Path, what: str) -> dict[str, object]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} client did not stop") from exc
    if not out.exists():
        raise BenchError(f"{what} client wrote no result (exit {proc.returncode})")
    result: dict[str, object] = json.loads(out.read_text())
    return result


def measure(env: Env, cell: Cell, tool: str, rep: int, svc: Service) -> RunResult:
    """One migration of a fresh server, with its client in C talking to it, from A to B."""
    r = RunResult(cell.mode, None, tool, rep, cell.label)
    run_dir = env.tmp / f"{cell.mode}-{cell.migration}-{cell.link_mbit or 0}-{rep}-{tool}"
    run_dir.mkdir()
    if env.service is None:
        raise BenchError("no service address configured")
    a, b, c = env.topo["a"], env.topo["b"], env.topo["c"]
    ip = env.service.split("/", 1)[0]
    restored: list[int] = []
    server: Server | None = None
    client: subprocess.Popen[bytes] | None = None
    try:
        reset_network(env)
        a.run("ip", "addr", "add", env.service, "dev", env.dev)
        server = svc.start(env, run_dir, ip, rep)
        r.rss_bytes = rss_bytes(server.pid)
        out_path, log_path = run_dir / "client.json", run_dir / "client.log"
        with log_path.open("wb") as log:
            client = c.popen(*svc.client_argv(env, ip, out_path, rep), cwd=REPO,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_ready(f"{svc.what}'s client", lambda: b"connected" in log_path.read_bytes(),
                   client, log_path, min(env.timeout, 30))
        time.sleep(svc.warmup_s)
        t_start = time.time()
        out = svc.move(cell, tool, server)(env, run_dir, restored)
        t_done = time.time()
        if not restored or not alive(restored[-1]):
            raise BenchError(f"restored {svc.what} ({restored}) is not running")
        if client.poll() is not None:
            raise BenchError(f"the client stopped during the migration: "
                             f"{log_path.read_text(errors='replace').strip()[-300:]}")
        time.sleep(svc.after_s)
        when = Window(t_start, t_done, time.time())
        res = _stop_client(client, out_path, svc.what)
        if res.get("error"):
            raise BenchError(f"the client's connection broke: {res['error']}")
        if number(res, "bad"):
            raise BenchError(f"wrong answers: {res['bad']}")
        details = svc.judge(env, ip, res, when, out)
        if not has_address(b, ip, env.dev) or has_address(a, ip, env.dev):
            raise BenchError(f"{ip} is not (only) on B after the migration")
        gap_end = res.get("max_gap_end")
        r.succeed(out, number(res, "max_gap_ms"), {
            "client_gap_ms": number(res, "max_gap_ms"),
            # when the longest gap ended, from the migration's start (wall clock, same host)
            "client_gap_end_ms": ((gap_end - t_start) * 1000
                                  if isinstance(gap_end, int | float) else None),
            "migration_wall_ms": (t_done - t_start) * 1000,
            **server.details, **details}, cell.migration)
    except Exception as exc:
        r.fail(exc)
    finally:
        if client is not None:
            stop(client)
        for p in restored:  # on B, re-parented to init: only its PID reaches it
            kill_pid(p)
        if server is not None:
            server.stop()
        wait_gone([*restored, *([server.pid] if server else [])])
        reset_network(env)
    return r
