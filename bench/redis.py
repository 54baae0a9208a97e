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
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.netns import Node

from bench.cell import Cell, migrator
from bench.env import Env, Outcome
from bench.proc import PY, BenchError
from bench.resp import Timeline, load_commands
from bench.service import Move, Server, Window, bind, launch, number

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


def prepare(env: Env, ip: str, server: Server) -> Server:
    """Load the keys into the started ``server`` (``DBSIZE`` checked) and measure
    redis-benchmark's GET rate; ``server`` is stopped if that fails."""
    try:
        c = env.topo["c"]
        load_ms = _load(c, ip, env)
        if (n := _cli(c, ip, "DBSIZE", timeout=60)) != str(env.redis_keys):
            raise BenchError(f"DBSIZE {n} after loading {env.redis_keys} keys")
        server.details = {"keys_loaded_ms": load_ms,
                          "rb_get_rps_before": _benchmark(c, ip, env)}
    except BaseException:
        server.stop()
        raise
    return server


class Redis:
    """S2's service: redis-server loaded with ``env.redis_keys`` keys, the load client."""

    what = "redis-server"
    warmup_s = WARMUP_S
    after_s = AFTER_S

    def start(self, env: Env, run_dir: Path, ip: str, rep: int) -> Server:
        """redis-server on A, loaded (``DBSIZE`` checked), and redis-benchmark's GET rate."""
        del rep
        conf = run_dir / "redis.conf"  # its path in argv marks the server ours (cleanup sweep)
        conf.write_text(CONF.format(ip=ip, port=PORT, dir=run_dir))
        return prepare(env, ip, launch(env, ["redis-server", str(conf)], PORT, self.what))

    def client_argv(self, env: Env, ip: str, out: Path, rep: int) -> list[str]:
        return [PY, "-m", "bench.redisclient", "run", "--to", f"{ip}:{PORT}", "--keys",
                str(env.redis_keys), "--out", str(out), "--seed", str(rep)]

    def move(self, cell: Cell, tool: str, server: Server) -> Move:
        return bind(migrator(cell, tool), server)

    def judge(self, env: Env, ip: str, result: dict[str, object], when: Window,
              out: Outcome) -> dict[str, Any]:
        """Requests after the gap, the data on B, throughput before / during / after."""
        after = number(result, "completed_after_gap")
        if after < MIN_AFTER:
            raise BenchError(f"only {after:.0f} requests completed after the longest gap")
        c = env.topo["c"]
        checked = _check(c, ip, env)
        counts = result.get("counts")
        line = Timeline(number(result, "t0"), number(result, "bin_ms"),
                        tuple(counts) if isinstance(counts, list) else ())
        # "during" = the tool's own total (by hand: not the page server it started
        # beforehand, nor the wait for arping afterwards)
        began = out.started_wall or when.start
        return {
            "rps_before": line.rate(line.t0 + 0.5, when.start),
            "rps_during": line.rate(began, began + out.total_ms / 1000),
            "rps_after": line.rate(when.done, when.stop),
            "rb_get_rps_after": _benchmark(c, ip, env),
            "client_completed": result.get("completed"),
            "dbsize_after": checked.get("dbsize"), "sampled_ok": checked.get("sampled"),
        }
