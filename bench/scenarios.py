"""Scenarios: a mode maps each tool to a migrator; one run measures one of them.

Adding a mode is a by-hand function in baseline.py plus one entry in ``MODES``.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.workloads import Workload, alive, start_workload

from bench import baseline, ferry
from bench.env import Env, Migrator, Outcome
from bench.proc import BenchError, kill_pid, rss_bytes, say, timens_monotonic_ms, wait_gone
from bench.stats import BASELINES, BY_HAND, BY_HAND_TLS, FERRYMAN, TOOLS

__all__ = ["BASELINES", "BY_HAND", "BY_HAND_TLS", "FERRYMAN", "MODES", "TOOLS", "Mode",
           "RunResult", "measure", "run_cell"]


def _ferryman(mode: str) -> Migrator:
    def migrate(env: Env, wl: Workload, run_dir: Path, restored: list[int]) -> Outcome:
        return ferry.migrate(env, wl, run_dir, restored, "--mode", mode)
    return migrate


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    default_sizes: tuple[int, ...]  # MiB
    migrators: dict[str, Migrator]

    def migrator(self, tool: str) -> Migrator:
        return self.migrators[tool]


MODES: dict[str, Mode] = {
    "cold": Mode("cold", "cold, idle workload", (256, 1024), {
        FERRYMAN: _ferryman("cold"),
        BY_HAND: functools.partial(baseline.cold, tls=False),
        BY_HAND_TLS: functools.partial(baseline.cold, tls=True),
    }),
    "postcopy": Mode("postcopy", "post-copy (lazy pages), idle workload", (256, 1024, 4096), {
        FERRYMAN: _ferryman("postcopy"),
        BY_HAND: functools.partial(baseline.lazy, tls=False),
        BY_HAND_TLS: functools.partial(baseline.lazy, tls=True),
    }),
}


@dataclass
class RunResult:
    mode: str
    size_mib: int
    tool: str
    rep: int
    ok: bool = False
    error: str | None = None
    # Longest heartbeat gap the workload saw, on CLOCK_REALTIME (CRIU's time namespace
    # shifts the restored monotonic clock; details.timens_jump_ms records by how much).
    downtime_ms: float | None = None
    total_ms: float | None = None
    memory_complete_ms: float | None = None  # post-copy: resumed on B → every page there
    rss_bytes: int | None = None
    bytes_moved: int | None = None
    bad_pages: int | None = None
    started_at: float = field(default_factory=time.time)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _int(status: dict[str, object], key: str) -> int:
    value = status.get(key)
    if not isinstance(value, int):
        raise BenchError(f"workload status has no integer {key!r}: {status}")
    return value


def measure(env: Env, mode: Mode, tool: str, size_mib: int, rep: int) -> RunResult:
    """One migration of a fresh workload of ``size_mib`` MiB from A to B by ``tool``."""
    r = RunResult(mode.name, size_mib, tool, rep)
    run_dir = env.tmp / f"{mode.name}-{size_mib}-{rep}-{tool}"
    run_dir.mkdir()
    restored: list[int] = []
    wl: Workload | None = None
    try:
        wl = start_workload(env.topo["a"], run_dir / "status.json", mib=size_mib,
                            seed=f"bench-{size_mib}-{rep}", timeout=env.timeout)
        # The workload verified its memory once it was ready; a second pass here would only
        # cost time (~2 s per GiB in Python).
        before = json.loads(wl.status_path.read_text())
        if _int(before, "bad_pages") != 0:
            raise BenchError(f"workload memory bad before migrating: {before}")
        r.rss_bytes = rss_bytes(wl.pid)
        offset_before = timens_monotonic_ms(wl.pid)
        wl.reset_gap()
        time.sleep(0.05)  # the reset takes effect at the next 1 ms heartbeat
        out = mode.migrator(tool)(env, wl, run_dir, restored)
        new_pid = restored[-1]
        if not alive(new_pid):
            raise BenchError(f"restored workload PID {new_pid} is not running")
        jump = offset_before - timens_monotonic_ms(new_pid)  # time the restored clock skipped
        after = wl.status(new_pid, timeout=env.timeout)
        r.bad_pages = _int(after, "bad_pages")
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
        r.ok = True
    except Exception as exc:
        r.error = f"{type(exc).__name__}: {exc}"
        say(f"  !! {mode.name} {size_mib} MiB run {rep} {tool} FAILED: {r.error}")
    finally:
        for pid in restored:  # on B, reparented to init: only its PID reaches it
            kill_pid(pid)
        if wl is not None:
            wl.kill()
        wait_gone([*restored, *([wl.pid] if wl is not None else [])])
    return r


def run_cell(env: Env, mode: Mode, size_mib: int, runs: int, tools: tuple[str, ...]
             ) -> list[RunResult]:
    """``runs`` repetitions of each tool, rotating which goes first (noise is shared)."""
    results: list[RunResult] = []
    for rep in range(1, runs + 1):
        k = (rep - 1) % len(tools)
        for tool in (*tools[k:], *tools[:k]):
            say(f"{mode.name} {size_mib} MiB run {rep}/{runs}: {tool} …")
            r = measure(env, mode, tool, size_mib, rep)
            if r.ok:
                tail = ("" if r.memory_complete_ms is None
                        else f", memory complete {r.memory_complete_ms:.0f} ms after resuming")
                say(f"  {tool}: downtime {r.downtime_ms:.0f} ms, total {r.total_ms:.0f} ms"
                    f"{tail}")
            results.append(r)
    return results
