"""Scenarios: a mode is a set of cells; one run measures one tool on one cell.

``cold`` and ``postcopy`` migrate the idle memory workload at several sizes; ``echo`` (the
issue's S3) a TCP echo server with a client in node C, cold and post-copy (bench/tcpecho.py);
``tree`` (S4) process trees of 1, 10 and 100 processes, cold (bench/tree.py). Who migrates is
``bench.cell.migrator``: ferryman, or CRIU's commands by hand (bench/baseline.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.workloads import Workload, alive, start_workload

from bench import tcpecho, tree
from bench.cell import Cell, RunResult, int_field, migrator
from bench.env import Env
from bench.proc import BenchError, kill_pid, rss_bytes, say, timens_monotonic_ms, wait_gone
from bench.stats import BASELINES, BY_HAND, BY_HAND_TLS, FERRYMAN, TOOLS, criu_ms

__all__ = ["BASELINES", "BY_HAND", "BY_HAND_TLS", "FERRYMAN", "MODES", "SCENARIOS", "TOOLS",
           "Cell", "Mode", "RunResult", "cells_for", "measure", "run_cell"]

Measure = Callable[[Env, Cell, str, int], RunResult]


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    kind: str  # "memory", "echo" or "tree": which measurement a run is
    default_sizes: tuple[int, ...] = ()  # MiB (memory: one cell each; tree: the first)
    migrations: tuple[str, ...] = ()  # echo: one cell per migration mode
    default_procs: tuple[int, ...] = ()  # tree: one cell per process count
    scenario: str = ""  # the name for it


MODES: dict[str, Mode] = {
    "cold": Mode("cold", "cold, idle workload", "memory", (256, 1024), ("cold",)),
    "postcopy": Mode("postcopy", "post-copy (lazy pages), idle workload", "memory",
                     (256, 1024, 4096), ("postcopy",)),
    "echo": Mode("echo", "S3: TCP echo server with a client every 10 ms: client-observed "
                 "downtime", "echo", (), ("cold", "postcopy"), scenario="S3"),
    "tree": Mode("tree", "S4: process trees of 1, 10 and 100 processes: freeze time and "
                 "downtime", "tree", (64,), ("cold",), (1, 10, 100), scenario="S4"),
}
SCENARIOS = {m.scenario: m.name for m in MODES.values() if m.scenario}


def cells_for(mode: Mode, sizes: list[int] | None = None, procs: list[int] | None = None,
              migrations: list[str] | None = None) -> list[Cell]:
    """The cells of ``mode``; ``sizes`` (memory), ``procs`` / ``sizes[0]`` (tree) and
    ``migrations`` (echo) override its defaults."""
    if mode.kind == "memory":
        return [Cell(mode.name, f"{s} MiB", mode.migrations[0], s)
                for s in (sizes or mode.default_sizes)]
    if mode.kind == "echo":
        return [Cell(mode.name, m, m) for m in (migrations or mode.migrations)]
    mib = (sizes or mode.default_sizes)[0]
    return [Cell(mode.name, f"{n} process{'es' if n != 1 else ''}", "cold", mib, n)
            for n in (procs or mode.default_procs)]


def measure(env: Env, cell: Cell, tool: str, rep: int) -> RunResult:
    """One migration of a fresh idle workload of ``cell.size_mib`` MiB from A to B."""
    size_mib = cell.size_mib or 0
    r = RunResult(cell.mode, size_mib, tool, rep, cell.label)
    run_dir = env.tmp / f"{cell.mode}-{size_mib}-{rep}-{tool}"
    run_dir.mkdir()
    restored: list[int] = []
    wl: Workload | None = None
    try:
        wl = start_workload(env.topo["a"], run_dir / "status.json", mib=size_mib,
                            seed=f"bench-{size_mib}-{rep}", timeout=env.timeout)
        # The workload verified its memory once it was ready; a second pass here would only
        # cost time (~2 s per GiB in Python).
        before = json.loads(wl.status_path.read_text())
        if int_field(before, "bad_pages") != 0:
            raise BenchError(f"workload memory bad before migrating: {before}")
        r.rss_bytes = rss_bytes(wl.pid)
        offset_before = timens_monotonic_ms(wl.pid)
        wl.reset_gap()
        time.sleep(0.05)  # the reset takes effect at the next 1 ms heartbeat
        out = migrator(cell, tool)(env, wl, run_dir, restored)
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
        r.downtime_ms = float(gap)
        r.total_ms = out.total_ms
        r.memory_complete_ms = out.memory_complete_ms
        r.bytes_moved = out.bytes_moved
        r.details = {"workload_max_gap_ms": float(gap), "timens_jump_ms": jump, **out.details}
        if cell.migration == "cold":  # CRIU's lazy-mode stats-dump is garbage (DESIGN.md)
            r.details.update(criu_ms(out.details.get("criu_dump")))
        r.ok = True
    except Exception as exc:
        r.error = f"{type(exc).__name__}: {exc}"
        say(f"  !! {cell.mode} {cell.label} run {rep} {tool} FAILED: {r.error}")
    finally:
        for pid in restored:  # on B, reparented to init: only its PID reaches it
            kill_pid(pid)
        if wl is not None:
            wl.kill()
        wait_gone([*restored, *([wl.pid] if wl is not None else [])])
    return r


MEASURE: dict[str, Measure] = {"memory": measure, "echo": tcpecho.measure,
                               "tree": tree.measure}


def run_cell(env: Env, cell: Cell, runs: int, tools: tuple[str, ...]) -> list[RunResult]:
    """``runs`` repetitions of each tool, rotating which goes first (noise is shared)."""
    how = MEASURE[MODES[cell.mode].kind]
    results: list[RunResult] = []
    for rep in range(1, runs + 1):
        k = (rep - 1) % len(tools)
        for tool in (*tools[k:], *tools[:k]):
            say(f"{cell.mode} {cell.label} run {rep}/{runs}: {tool} …")
            r = how(env, cell, tool, rep)
            if r.ok:
                tail = ("" if r.memory_complete_ms is None
                        else f", memory complete {r.memory_complete_ms:.0f} ms after resuming")
                freeze = r.details.get("freezing_time_ms")
                if isinstance(freeze, float):
                    tail += f", CRIU freezing {freeze:.1f} ms"
                what = "client gap" if cell.mode == "echo" else "downtime"
                say(f"  {tool}: {what} {r.downtime_ms:.0f} ms, total {r.total_ms:.0f} ms"
                    f"{tail}")
            results.append(r)
    return results
