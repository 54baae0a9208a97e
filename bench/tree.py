"""S4: process trees of 1, 10 and 100 processes, migrated cold: freeze time and downtime.

One run: the test workload with ``--children procs - 1`` (tests/support/workload.py: the
root holds ``--mib`` MiB and beats every 1 ms; each child holds ``mib // children`` MiB, at
least 1, and beats every 10 ms), in its own PID namespace on A. Once every child has
written its ready status the tree is counted, its RSS summed, the gaps reset, and it is
migrated cold to B. Afterwards the restored tree must have the same number of processes,
and every process verifies its memory (``bad_pages`` must be 0 everywhere). Downtime = the
root's longest heartbeat gap (CLOCK_REALTIME); CRIU's ``freezing_time`` (seizing every task
of the tree) and ``frozen_time`` come from ferryman's report (``criu.dump``) or, by hand,
from the ``stats-dump`` image (decoded with pycriu).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.support.workloads import Workload, alive, children, start_workload

from bench.cell import Cell, RunResult, int_field, migrator
from bench.env import Env
from bench.proc import BenchError, kill_pid, rss_bytes, timens_monotonic_ms, wait_gone


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def _child_paths(status: Path, n: int) -> list[Path]:
    return [Path(f"{status}.child{i}") for i in range(1, n + 1)]


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _wait_children_ready(paths: list[Path], timeout: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        got = [_read(p) for p in paths]
        if all(s is not None for s in got):
            return [s for s in got if s is not None]
        if time.monotonic() > deadline:
            missing = sum(1 for s in got if s is None)
            raise BenchError(f"{missing} of {len(paths)} children wrote no ready status")
        time.sleep(0.05)


def _children_status(pids: list[int], paths: list[Path], timeout: float
                     ) -> list[dict[str, object]]:
    """SIGUSR1 to every child: each verifies its memory and rewrites its status file."""
    before = {p: p.stat().st_mtime_ns if p.exists() else 0 for p in paths}
    for pid in pids:
        os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while True:
        fresh = [s for p in paths if p.exists() and p.stat().st_mtime_ns != before[p]
                 and (s := _read(p)) is not None and s.get("phase") == "running"]
        if len(fresh) == len(paths):
            return fresh
        if time.monotonic() > deadline:
            raise BenchError(f"only {len(fresh)} of {len(paths)} restored children answered")
        time.sleep(0.02)


def _max_gap(statuses: list[dict[str, object]]) -> float | None:
    gaps = [float(g) for s in statuses if isinstance(g := s.get("max_gap_ms"), int | float)]
    return max(gaps) if gaps else None


def measure(env: Env, cell: Cell, tool: str, rep: int) -> RunResult:
    """One cold migration of a fresh tree of ``cell.procs`` processes from A to B."""
    size = cell.size_mib or 64
    n_kids = cell.procs - 1
    r = RunResult(cell.mode, size, tool, rep, cell.label)
    run_dir = env.tmp / f"tree-{cell.procs}-{rep}-{tool}"
    run_dir.mkdir()
    status = run_dir / "status.json"
    paths = _child_paths(status, n_kids)
    restored: list[int] = []
    wl: Workload | None = None
    gone: list[int] = []
    try:
        wl = start_workload(env.topo["a"], status, mib=size, seed=f"tree-{cell.procs}-{rep}",
                            children_=n_kids, timeout=env.timeout)
        ready = _wait_children_ready(paths, env.timeout)
        root = json.loads(status.read_text())
        bad = int_field(root, "bad_pages") + sum(int_field(s, "bad_pages") for s in ready)
        if bad:
            raise BenchError(f"tree memory bad before migrating: {bad} pages")
        kids = descendants(wl.pid)
        gone += kids
        if len(kids) != n_kids:
            raise BenchError(f"tree has {len(kids) + 1} processes, expected {cell.procs}")
        r.rss_bytes = sum(rss_bytes(p) for p in (wl.pid, *kids))
        offset_before = timens_monotonic_ms(wl.pid)
        for p in (wl.pid, *kids):
            wl.reset_gap(p)
        time.sleep(0.05)  # the reset takes effect at the next heartbeat
        out = migrator(cell, tool)(env, wl, run_dir, restored)
        new_pid = restored[-1]
        if not alive(new_pid):
            raise BenchError(f"restored tree root PID {new_pid} is not running")
        new_kids = descendants(new_pid)
        gone += new_kids
        if len(new_kids) != n_kids:
            raise BenchError(f"restored tree has {len(new_kids) + 1} processes, "
                             f"expected {cell.procs}")
        jump = offset_before - timens_monotonic_ms(new_pid)
        after = wl.status(new_pid, timeout=env.timeout)
        kid_status = _children_status(new_kids, paths, env.timeout)
        r.bad_pages = (int_field(after, "bad_pages")
                       + sum(int_field(s, "bad_pages") for s in kid_status))
        if r.bad_pages != 0:
            raise BenchError(f"MEMORY CORRUPTED: {r.bad_pages} bad pages after migrating "
                             f"({tool}, {cell.label})")
        gap = after.get("max_gap_ms")
        if not isinstance(gap, int | float):
            raise BenchError(f"workload status has no max_gap_ms: {after}")
        r.succeed(out, float(gap), {  # cold: with CRIU's dump timings
            "workload_max_gap_ms": float(gap), "timens_jump_ms": jump, "procs": cell.procs,
            "children_max_gap_ms": _max_gap(kid_status)}, cell.migration)
    except Exception as exc:
        r.fail(exc)
    finally:
        # Each root is the init of its PID namespace: killing it kills its whole tree.
        for pid in restored:
            kill_pid(pid)
        if wl is not None:
            wl.kill()
        wait_gone([*restored, *([wl.pid] if wl is not None else []), *gone])
    return r
