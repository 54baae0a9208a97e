"""Scenarios: a mode is a set of cells; one run measures one tool on one cell.

``cold`` and ``postcopy`` (the issue's S1) migrate the memory workload at several sizes and
dirty rates (a grid: every size by every rate; ``precopy`` joins it in the QEMU guests);
``redis`` (S2) a redis-server with 10^6 keys under load from node C, cold and post-copy
(bench/redis.py); ``echo`` (S3) a TCP echo server with a client in node C, cold and
post-copy (bench/tcpecho.py), and ``runc-echo`` the same service as a runc container
(bench/runcbox.py; S2 and S3 run through bench/service.py); ``tree`` (S4) process trees of 1,
10 and 100 processes, cold (bench/tree.py). Who migrates is ``bench.cell.migrator``:
ferryman, or CRIU's commands by hand (bench/baseline.py); for the container the service's
own ``move`` (ferryman, or runc's commands by hand: bench/baseline_runc.py).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.workloads import Workload, alive, start_workload

from bench import service, tree
from bench.cell import TCP_MODES, Cell, RunResult, int_field, migrator
from bench.env import Env
from bench.podmanbox import TOOLS as PODMAN_TOOLS
from bench.podmanbox import PodmanEcho, PodmanRedis
from bench.proc import (
    BenchError,
    kill_pid,
    prune_images,
    rss_bytes,
    say,
    timens_monotonic_ms,
    wait_gone,
)
from bench.redis import Redis
from bench.runcbox import TOOLS as RUNC_TOOLS
from bench.runcbox import RuncEcho
from bench.stats import BASELINES, BY_HAND, BY_HAND_TLS, FERRYMAN, TOOLS
from bench.tcpecho import EchoProcess
from bench.wire import TxSampler, steady_rate, tx_bytes

__all__ = ["BASELINES", "BY_HAND", "BY_HAND_TLS", "FERRYMAN", "MODES", "SCENARIOS", "TOOLS",
           "Cell", "Mode", "RunResult", "cells_for", "measure", "run_cell"]

Measure = Callable[[Env, Cell, str, int], RunResult]


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    kind: str  # "memory", "redis", "echo" or "tree": which measurement a run is
    default_sizes: tuple[int, ...] = ()  # MiB (memory: one cell each; tree: the first)
    migrations: tuple[str, ...] = ()  # echo, redis: one cell per migration mode
    default_procs: tuple[int, ...] = ()  # tree: one cell per process count
    scenario: str = ""  # the name for it
    default_rates: tuple[int, ...] = ()  # memory: dirty pages/s, one cell per size and rate
    default: bool = True  # part of a plain `make bench` (pre-copy: only in the QEMU guests)
    tools: tuple[str, ...] = TOOLS  # who can migrate it (runc has no TLS flags for by hand)
    links: tuple[int, ...] = ()  # A's link shaped to each rate, Mbit/s: one cell each
    fill: str = "pattern"  # memory: the workload's pages ("random": incompressible)
    ferryman_args: tuple[str, ...] = ()  # more `ferryman migrate` flags for every cell


S1_SIZES = (256, 1024, 4096)
S1_RATES = (0, 1000, 10000)
SHAPED_LINKS = (1000, 10000)  # Mbit/s
MAX_BANDWIDTH_MBIT = 200

MODES: dict[str, Mode] = {
    "cold": Mode("cold", "S1: memory writer, cold", "memory", S1_SIZES, ("cold",),
                 scenario="S1", default_rates=S1_RATES),
    "postcopy": Mode("postcopy", "S1: memory writer, post-copy (lazy pages)", "memory",
                     S1_SIZES, ("postcopy",), scenario="S1", default_rates=S1_RATES),
    # The page path without compression's help: pseudo-random pages, link not shaped.
    "postcopy-random": Mode("postcopy-random", "S1 variant: memory writer of pseudo-random "
                            "(incompressible) pages, post-copy", "memory", (1024,),
                            ("postcopy",), default_rates=(0,), fill="random"),
    # Needs soft-dirty tracking (the QEMU guests, tests/vm); no by-hand baseline yet.
    "precopy": Mode("precopy", "S1: memory writer, pre-copy", "memory", S1_SIZES,
                    ("precopy",), scenario="S1", default_rates=S1_RATES, default=False),
    "redis": Mode("redis", "S2: redis-server with 10^6 keys under load from node C: "
                  "client-observed downtime and throughput", "redis", (),
                  ("cold", "postcopy"), scenario="S2"),
    "echo": Mode("echo", "S3: TCP echo server with a client every 10 ms: client-observed "
                 "downtime", "echo", (), ("cold", "postcopy"), scenario="S3"),
    "runc-echo": Mode("runc-echo", "S3, container: the echo server as a runc container, "
                      "client every 10 ms: client-observed downtime", "runc-echo", (),
                      ("cold", "postcopy"), scenario="S3", tools=RUNC_TOOLS),
    "podman-echo": Mode("podman-echo", "S3, Podman: the echo server as a Podman container, "
                        "client every 10 ms: client-observed gap vs Podman's own "
                        "export/import", "echo", (), ("cold", "postcopy"), scenario="S3",
                        tools=PODMAN_TOOLS),
    "podman-redis": Mode("podman-redis", "S2, Podman: redis-server with 10^6 keys as a Podman "
                         "container under load from node C: client-observed gap vs Podman's "
                         "own export/import", "redis", (), ("cold", "postcopy"),
                         scenario="S2", tools=PODMAN_TOOLS),
    # Issue 17: A's link shaped with tc (bench/shape.py), compressible and incompressible
    # memory; and the page transfer's own cap measured on the wire.
    "shaped-redis": Mode("shaped-redis", "Shaped link: redis-server with 10^6 keys under load "
                         "from node C over a tc-shaped link, cold: client-observed downtime",
                         "redis", (), ("cold",), scenario="SHAPED", links=SHAPED_LINKS,
                         ferryman_args=("--compress", "auto")),
    "shaped-random": Mode("shaped-random", "Shaped link: memory writer of pseudo-random "
                          "(incompressible) pages over a tc-shaped link, cold", "memory",
                          (256,), ("cold",), scenario="SHAPED", default_rates=(0,),
                          links=SHAPED_LINKS, fill="random",
                          ferryman_args=("--compress", "auto")),
    "max-bandwidth": Mode("max-bandwidth", "ferryman --max-bandwidth 200: the rate on the "
                          "wire while the pages go (random pages, cold, link not shaped)",
                          "memory", (128,), ("cold",), scenario="SHAPED", default_rates=(0,),
                          tools=(FERRYMAN,), fill="random",
                          ferryman_args=("--max-bandwidth", str(MAX_BANDWIDTH_MBIT))),
    "tree": Mode("tree", "S4: process trees of 1, 10 and 100 processes: freeze time and "
                 "downtime", "tree", (64,), ("cold",), (1, 10, 100), scenario="S4"),
}
# The scenario names: each stands for the default modes that carry it.
SCENARIOS: dict[str, tuple[str, ...]] = {}
for _m in MODES.values():
    if _m.scenario and _m.default:
        SCENARIOS[_m.scenario] = (*SCENARIOS.get(_m.scenario, ()), _m.name)


def memory_label(size_mib: int, rate: int) -> str:
    return f"{size_mib} MiB, {rate} pages/s"


def link_label(mbit: int | None) -> str:
    if mbit is None:
        return ""
    return f", {mbit // 1000} Gbit/s" if mbit % 1000 == 0 else f", {mbit} Mbit/s"


def cells_for(mode: Mode, sizes: list[int] | None = None, procs: list[int] | None = None,
              migrations: list[str] | None = None, rates: list[int] | None = None
              ) -> list[Cell]:
    """The cells of ``mode``; ``sizes`` x ``rates`` (memory), ``procs`` / ``sizes[0]``
    (tree) and ``migrations`` (echo, redis) override its defaults."""
    links: tuple[int | None, ...] = mode.links or (None,)
    extra = {"fill": mode.fill, "ferryman_args": mode.ferryman_args}
    if mode.kind == "memory":
        return [Cell(mode.name, memory_label(s, r) + link_label(k), mode.migrations[0], s,
                     dirty_rate=r, link_mbit=k, **extra)
                for s in (sizes or mode.default_sizes)
                for r in (rates if rates is not None else mode.default_rates or (0,))
                for k in links]
    if mode.kind in ("echo", "runc-echo", "redis"):
        return [Cell(mode.name, m + link_label(k), m, link_mbit=k)
                for m in (migrations or mode.migrations) for k in links]
    mib = (sizes or mode.default_sizes)[0]
    return [Cell(mode.name, f"{n} process{'es' if n != 1 else ''}", "cold", mib, n)
            for n in (procs or mode.default_procs)]


def measure(env: Env, cell: Cell, tool: str, rep: int) -> RunResult:
    """One migration of a fresh workload of ``cell.size_mib`` MiB, rewriting
    ``cell.dirty_rate`` pages per second, from A to B.

    Besides the workload's own downtime: the bytes A sent on its interface during the
    migration (``wire_bytes``; by hand adds the image files it copied with ``cp``), as
    ``moved_bytes`` for every tool alike.
    """
    size_mib = cell.size_mib or 0
    rate = cell.dirty_rate
    r = RunResult(cell.mode, size_mib, tool, rep, cell.label)
    run_dir = env.tmp / f"{cell.mode}-{size_mib}-{rate}-{cell.link_mbit or 0}-{rep}-{tool}"
    run_dir.mkdir()
    restored: list[int] = []
    wl: Workload | None = None
    try:
        wl = start_workload(env.topo["a"], run_dir / "status.json", mib=size_mib,
                            seed=f"bench-{size_mib}-{rate}-{rep}", dirty_rate=rate,
                            fill=cell.fill, timeout=env.timeout)
        # The workload verified its memory once it was ready; a second pass here would only
        # cost time (~2 s per GiB in Python).
        before = json.loads(wl.status_path.read_text())
        if int_field(before, "bad_pages") != 0:
            raise BenchError(f"workload memory bad before migrating: {before}")
        r.rss_bytes = rss_bytes(wl.pid)
        offset_before = timens_monotonic_ms(wl.pid)
        wl.reset_gap()
        time.sleep(0.05)  # the reset takes effect at the next 1 ms heartbeat
        tx0 = tx_bytes(env.topo["a"], env.dev)
        sampler = TxSampler(env.a_pid, env.dev).start() if env.a_pid else None
        try:
            out = migrator(cell, tool)(env, wl, run_dir, restored)
        finally:
            samples = sampler.stop() if sampler else []
        wire = tx_bytes(env.topo["a"], env.dev) - tx0
        rate_bps = steady_rate(samples)
        new_pid = restored[-1]
        if not alive(new_pid):
            raise BenchError(f"restored workload PID {new_pid} is not running")
        jump = offset_before - timens_monotonic_ms(new_pid)  # time the restored clock skipped
        after = wl.status(new_pid, timeout=env.timeout)
        r.bad_pages = int_field(after, "bad_pages")
        if r.bad_pages != 0:
            raise BenchError(f"MEMORY CORRUPTED: {r.bad_pages} bad pages after migrating "
                             f"({tool}, {size_mib} MiB)")
        gap = after.get("max_gap_ms")
        if not isinstance(gap, int | float):
            raise BenchError(f"workload status has no max_gap_ms: {after}")
        copied = out.details.get("copied_bytes")
        r.succeed(out, float(gap), {
            "workload_max_gap_ms": float(gap), "timens_jump_ms": jump, "dirty_rate": rate,
            "writes": after.get("writes"), "wire_bytes": wire,
            "wire_mbit": rate_bps * 8 / 1e6 if rate_bps else None,
            "moved_bytes": wire + (copied if isinstance(copied, int) else 0)}, cell.migration)
    except Exception as exc:
        r.fail(exc)
    finally:
        for pid in restored:  # on B, reparented to init: only its PID reaches it
            kill_pid(pid)
        if wl is not None:
            wl.kill()
        wait_gone([*restored, *([wl.pid] if wl is not None else [])])
    return r


MEASURE: dict[str, Measure] = {
    "memory": measure, "tree": tree.measure,
    "echo": functools.partial(service.measure, svc=EchoProcess()),
    "runc-echo": functools.partial(service.measure, svc=RuncEcho()),
    "redis": functools.partial(service.measure, svc=Redis())}
# Podman's modes share their kind's cells and reports but start a container.
MEASURE_BY_MODE: dict[str, Measure] = {
    "podman-echo": functools.partial(service.measure, svc=PodmanEcho()),
    "podman-redis": functools.partial(service.measure, svc=PodmanRedis())}


def run_cell(env: Env, cell: Cell, runs: int, tools: tuple[str, ...]) -> list[RunResult]:
    """``runs`` repetitions of each tool, rotating which goes first (noise is shared)."""
    mode = MODES[cell.mode]
    how = MEASURE_BY_MODE.get(mode.name) or MEASURE[mode.kind]
    tools = tuple(t for t in tools if t in mode.tools)
    results: list[RunResult] = []
    for rep in range(1, runs + 1):
        k = (rep - 1) % len(tools)
        for tool in (*tools[k:], *tools[:k]):
            say(f"{cell.mode} {cell.label} run {rep}/{runs}: {tool} …")
            r = how(env, cell, tool, rep)
            if not env.keep_images:
                prune_images(env.tmp)
            if r.ok:
                tail = ("" if r.memory_complete_ms is None
                        else f", memory complete {r.memory_complete_ms:.0f} ms after resuming")
                freeze = r.details.get("freezing_time_ms")
                if isinstance(freeze, float):
                    tail += f", CRIU freezing {freeze:.1f} ms"
                what = "client gap" if cell.mode in TCP_MODES else "downtime"
                say(f"  {tool}: {what} {r.downtime_ms:.0f} ms, total {r.total_ms:.0f} ms"
                    f"{tail}")
            results.append(r)
    return results
