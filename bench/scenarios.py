"""Scenarios: a mode is a pair of migrators (ferryman, by hand); one run measures one of them.

Adding a mode (e.g. post-copy) is one function in baseline.py plus one line in ``MODES``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.workloads import Workload, alive, start_workload

from bench import baseline, ferry
from bench.env import Env, Migrator, Outcome
from bench.proc import BenchError, kill_pid, rss_bytes, say, timens_monotonic_ms

FERRYMAN = "ferryman"
BY_HAND = "by-hand"
TOOLS = (FERRYMAN, BY_HAND)


def _ferryman_cold(env: Env, wl: Workload, run_dir: Path, restored: list[int]) -> Outcome:
    return ferry.migrate(env, wl, run_dir, restored, "--mode", "cold")


@dataclass(frozen=True)
class Mode:
    name: str
    title: str
    ferryman: Migrator
    by_hand: Migrator

    def migrator(self, tool: str) -> Migrator:
        return self.ferryman if tool == FERRYMAN else self.by_hand


MODES: dict[str, Mode] = {
    "cold": Mode("cold", "cold, idle workload", _ferryman_cold, baseline.cold),
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
        before = wl.status(timeout=env.timeout)
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
    return r


def run_cell(env: Env, mode: Mode, size_mib: int, runs: int, tools: tuple[str, ...]
             ) -> list[RunResult]:
    """``runs`` repetitions of each tool, alternating which goes first (noise is shared)."""
    results: list[RunResult] = []
    for rep in range(1, runs + 1):
        order = tools if rep % 2 else tuple(reversed(tools))
        for tool in order:
            say(f"{mode.name} {size_mib} MiB run {rep}/{runs}: {tool} …")
            r = measure(env, mode, tool, size_mib, rep)
            if r.ok:
                say(f"  {tool}: downtime {r.downtime_ms:.0f} ms, total {r.total_ms:.0f} ms, "
                    f"{(r.bytes_moved or 0) >> 20} MiB moved")
            results.append(r)
    return results
