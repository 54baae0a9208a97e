"""S2: redis-server with 10^6 keys, under load from node C, migrated with its connections.

One run: the service address (``env.service``) goes onto A's eth0; redis-server (Debian
package, no persistence, its config and log under the run's directory) starts on it in its
own PID namespace; ``redis-cli --pipe`` loads ``env.redis_keys`` keys (bench/resp.py) and
``DBSIZE`` must say so; ``redis-benchmark -t get`` from C gives a throughput reference;
then the load client (bench/redisclient.py) keeps 4 connections x 8 pipelined GET/SET
busy from C. After ``WARMUP_S`` the server is migrated with its live connections and its
address (ferryman: ``--tcp-established --move-address``; by hand as in S3); the client
goes on for ``AFTER_S`` after the migration returned. The run fails unless the client's
connections survived (no error, every GET answered with its key's value, requests
completed after the gap), the address is on B only, and, on B, ``DBSIZE`` is the key count
and a sample of 1000 keys has the right values; ``redis-benchmark`` then runs again.

Downtime = the client's longest time without any completed request. Throughput = completed
requests per second before the migration, during it (its start until the command returned;
post-copy: the last page arrived) and after it, from the client's 10 ms timeline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.support.netns import Node
from tests.support.workloads import Workload, alive, children

from bench.cell import Cell, RunResult, migrator
from bench.env import Env
from bench.proc import PY, REPO, BenchError, kill_pid, rss_bytes, say, stop, wait_gone
from bench.resp import Timeline, load_commands
from bench.stats import criu_ms
from bench.tcpecho import has_address, reset_network

PORT = 6379
REDIS_KEYS = 10**6
REDIS_MIB = 400  # about what redis holds with 10^6 keys, with room (the memory check)
WARMUP_S = 2.0  # the client loads redis this long before the migration starts
AFTER_S = 2.0  # and this long after it returned
MIN_AFTER = 100  # requests completed after the longest gap, at least
CONF = """bind {ip}
port {port}
protected-mode no
save ""
appendonly no
daemonize no
set-proc-title no
dir {dir}
logfile {dir}/redis.log
"""


def _protocol(env: Env) -> Path:
    """The SET commands for ``redis-cli --pipe``, written once per benchmark."""
    path = env.tmp / f"redis-{env.redis_keys}.resp"
    if not path.exists():
        with path.open("wb") as fh:
            for chunk in load_commands(env.redis_keys):
                fh.write(chunk)
    return path


def _cli(node: Node, ip: str, *args: str, timeout: float) -> str:
    res = node.run("timeout", str(int(timeout)), "redis-cli", "-h", ip, "-p", str(PORT),
                   *args, check=False)
    if res.returncode != 0:
        raise BenchError(f"redis-cli {' '.join(args)} exited with {res.returncode}: "
                         f"{(res.stderr or res.stdout).strip()[-300:]}")
    return res.stdout.strip()


def _load(node: Node, ip: str, env: Env) -> float:
    """``redis-cli --pipe`` of every key from ``node``; ms."""
    t0 = time.monotonic()
    with _protocol(env).open("rb") as fh:
        res = subprocess.run(node.argv("redis-cli", "-h", ip, "-p", str(PORT), "--pipe"),
                             stdin=fh, capture_output=True, text=True, timeout=env.timeout,
                             check=False)
    ms = (time.monotonic() - t0) * 1000
    if res.returncode != 0 or f"replies: {env.redis_keys}" not in res.stdout \
            or "errors: 0," not in res.stdout:
        raise BenchError(f"redis-cli --pipe failed ({res.returncode}): "
                         f"{(res.stdout + res.stderr).strip()[-300:]}")
    return ms


def _benchmark(node: Node, ip: str, env: Env) -> float:
    """redis-benchmark's GET throughput (requests/s) over the key set, 4 connections x 16."""
    res = node.run("timeout", str(int(min(env.timeout, 120))), "redis-benchmark", "-h", ip,
                   "-p", str(PORT), "-t", "get", "-r", str(env.redis_keys), "-n", "200000",
                   "-c", "4", "-P", "16", "--csv", check=False)
    for line in res.stdout.splitlines():
        cols = [c.strip('"') for c in line.split(",")]
        if len(cols) > 1 and cols[0] == "GET":
            return float(cols[1])
    raise BenchError(f"redis-benchmark gave no GET throughput ({res.returncode}): "
                     f"{(res.stdout + res.stderr).strip()[-300:]}")


def _check(node: Node, ip: str, env: Env) -> dict[str, object]:
    res = node.run(PY, "-m", "bench.redisclient", "check", "--to", f"{ip}:{PORT}",
                   "--keys", str(env.redis_keys), check=False)
    if res.returncode != 0:
        raise BenchError(f"redis check on B failed: {res.stderr.strip()[-300:]}")
    out: dict[str, object] = json.loads(res.stdout)
    if out.get("dbsize") != env.redis_keys or out.get("n_bad") != 0:
        raise BenchError(f"DATA LOST on B: DBSIZE {out.get('dbsize')} (expected "
                         f"{env.redis_keys}), {out.get('n_bad')} of {out.get('sampled')} "
                         f"sampled keys wrong: {out.get('bad')}")
    return out


def _wait_connected(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while b"connected" not in log.read_bytes():
        if proc.poll() is not None:
            raise BenchError(f"redis client exited with {proc.returncode}: "
                             f"{log.read_text(errors='replace').strip()[-300:]}")
        if time.monotonic() > deadline:
            raise BenchError("redis client did not connect")
        time.sleep(0.01)


def _stop_client(proc: subprocess.Popen[bytes], out: Path) -> dict[str, object]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired as exc:
        raise BenchError("redis client did not stop") from exc
    if not out.exists():
        raise BenchError(f"redis client wrote no result (exit {proc.returncode})")
    result: dict[str, object] = json.loads(out.read_text())
    return result


def _num(d: dict[str, object], k: str) -> float:
    v = d.get(k)
    if not isinstance(v, int | float):
        raise BenchError(f"redis client result has no {k}")
    return float(v)


def _server(env: Env, a: Node, run_dir: Path, ip: str) -> tuple[subprocess.Popen[bytes], int]:
    conf = run_dir / "redis.conf"  # its path in argv marks the server ours (cleanup sweep)
    conf.write_text(CONF.format(ip=ip, port=PORT, dir=run_dir))
    launcher = a.popen("unshare", "-p", "-f", "setsid", "redis-server", str(conf),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    a.wait_listening(PORT, timeout=min(env.timeout, 60), proc=launcher)
    kids = children(launcher.pid)
    if not kids:
        raise BenchError("redis-server: no process under its launcher")
    return launcher, kids[0]


def measure(env: Env, cell: Cell, tool: str, rep: int) -> RunResult:
    """One migration of a fresh, loaded redis-server under load from C, from A to B."""
    r = RunResult(cell.mode, None, tool, rep, cell.label)
    run_dir = env.tmp / f"redis-{cell.migration}-{rep}-{tool}"
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
        launcher, pid = _server(env, a, run_dir, ip)
        load_ms = _load(c, ip, env)
        if (n := _cli(c, ip, "DBSIZE", timeout=60)) != str(env.redis_keys):
            raise BenchError(f"DBSIZE {n} after loading {env.redis_keys} keys")
        bench_before = _benchmark(c, ip, env)
        r.rss_bytes = rss_bytes(pid)
        out_path, log_path = run_dir / "client.json", run_dir / "client.log"
        with log_path.open("wb") as log:
            client = c.popen(PY, "-m", "bench.redisclient", "run", "--to", f"{ip}:{PORT}",
                             "--keys", str(env.redis_keys), "--out", str(out_path),
                             "--seed", str(rep), cwd=REPO, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log)
        _wait_connected(client, log_path, min(env.timeout, 30))
        time.sleep(WARMUP_S)
        wl = Workload(pid=pid, status_path=run_dir / "no-status", launcher=launcher)
        t_start = time.time()
        out = migrator(cell, tool)(env, wl, run_dir, restored)
        t_done = time.time()
        new_pid = restored[-1]
        if not alive(new_pid):
            raise BenchError(f"restored redis-server PID {new_pid} is not running")
        if client.poll() is not None:
            raise BenchError(f"the client stopped during the migration: "
                             f"{log_path.read_text(errors='replace').strip()[-300:]}")
        time.sleep(AFTER_S)
        t_stop = time.time()
        res = _stop_client(client, out_path)
        if res.get("error"):
            raise BenchError(f"the client's connections broke: {res['error']}")
        if _num(res, "bad"):
            raise BenchError(f"wrong answers: {res['bad']} (GET not the key's value)")
        after = _num(res, "completed_after_gap")
        if after < MIN_AFTER:
            raise BenchError(f"only {after:.0f} requests completed after the longest gap")
        if not has_address(b, ip, env.dev) or has_address(a, ip, env.dev):
            raise BenchError(f"{ip} is not (only) on B after the migration")
        checked = _check(c, ip, env)
        bench_after = _benchmark(c, ip, env)
        counts = res.get("counts")
        line = Timeline(_num(res, "t0"), _num(res, "bin_ms"),
                        tuple(counts) if isinstance(counts, list) else ())
        gap_end = res.get("max_gap_end")
        # "during" = the tool's own total (by hand: not the page server it started
        # beforehand, nor the wait for arping afterwards)
        began = out.started_wall or t_start
        r.downtime_ms = _num(res, "max_gap_ms")
        r.total_ms = out.total_ms
        r.memory_complete_ms = out.memory_complete_ms
        r.bytes_moved = out.bytes_moved
        r.details = {
            "client_gap_ms": r.downtime_ms,
            "client_gap_end_ms": ((gap_end - t_start) * 1000
                                  if isinstance(gap_end, int | float) else None),
            "migration_wall_ms": (t_done - t_start) * 1000,
            "rps_before": line.rate(line.t0 + 0.5, t_start),
            "rps_during": line.rate(began, began + out.total_ms / 1000),
            "rps_after": line.rate(t_done, t_stop),
            "rb_get_rps_before": bench_before, "rb_get_rps_after": bench_after,
            "client_completed": res.get("completed"), "keys_loaded_ms": load_ms,
            "dbsize_after": checked.get("dbsize"), "sampled_ok": checked.get("sampled"),
            **out.details,
        }
        if cell.migration == "cold":
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
