"""A benchmark cell (one mode at one size, variant or tree shape), one run's result, migrators."""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.workloads import Workload

from bench import baseline, ferry
from bench.env import Env, Migrator, Outcome
from bench.proc import BenchError, say
from bench.stats import BY_HAND_TLS, FERRYMAN, criu_ms


@dataclass(frozen=True)
class Cell:
    """What one cell migrates, and how."""

    mode: str  # "cold", "postcopy" (idle memory workload), "echo" (S3), "tree" (S4)
    label: str  # "256 MiB", "cold", "10 processes"
    migration: str  # "cold" or "postcopy": what the migration itself runs
    size_mib: int | None = None  # workload memory (echo: none, the server is tiny)
    procs: int = 1  # processes in the tree (tree: the root and procs - 1 children)
    dirty_rate: int = 0  # memory (S1): pages the workload rewrites per second
    link_mbit: int | None = None  # A's link shaped to this rate (bench/shape.py); None: not
    fill: str = "pattern"  # memory: the workload's pages, "pattern" or "random" (incompressible)
    ferryman_args: tuple[str, ...] = ()  # more `ferryman migrate` flags ("--max-bandwidth", …)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunResult:
    mode: str
    size_mib: int | None
    tool: str
    rep: int
    label: str = ""
    ok: bool = False
    error: str | None = None
    # Longest heartbeat gap the workload saw, on CLOCK_REALTIME (CRIU's time namespace
    # shifts the restored monotonic clock; details.timens_jump_ms records by how much).
    # echo: the longest gap between two answers the client in node C saw.
    downtime_ms: float | None = None
    total_ms: float | None = None
    memory_complete_ms: float | None = None  # post-copy: resumed on B → every page there
    rss_bytes: int | None = None  # tree: summed over its processes
    bytes_moved: int | None = None
    bad_pages: int | None = None
    started_at: float = field(default_factory=time.time)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def succeed(self, out: Outcome, downtime_ms: float, details: dict[str, Any],
                migration: str) -> None:
        """The run's figures: ``downtime_ms`` as the workload (or its client) saw it, the
        rest from the tool's ``out``; ``details`` go first, then the tool's."""
        self.downtime_ms = downtime_ms
        self.total_ms = out.total_ms
        self.memory_complete_ms = out.memory_complete_ms
        self.bytes_moved = out.bytes_moved
        self.details = {**details, **out.details}
        if migration == "cold":  # lazy stats-dump is garbage (docs/ARCHITECTURE.md, "CRIU facts")
            self.details.update(criu_ms(out.details.get("criu_dump")))
        self.ok = True

    def fail(self, exc: Exception) -> None:
        """Record why this run failed (the others go on) and say so."""
        self.error = f"{type(exc).__name__}: {exc}"
        say(f"  !! {self.mode} {self.label} run {self.rep} {self.tool} FAILED: {self.error}")


# live connections and a moving service address
TCP_MODES = ("echo", "runc-echo", "redis", "podman-echo", "podman-redis", "shaped-redis")
BY_HAND_MIGRATIONS = ("cold", "postcopy")


def int_field(status: dict[str, object], key: str) -> int:
    value = status.get(key)
    if not isinstance(value, int):
        raise BenchError(f"workload status has no integer {key!r}: {status}")
    return value


def ferryman_args(env: Env, migration: str, *, tcp: bool) -> list[str]:
    """``--mode MIGRATION`` and, with live connections, ``--tcp-established --move-address``."""
    if not tcp:
        return ["--mode", migration]
    if not env.service:
        raise BenchError("no service address configured for a TCP run")
    return ["--mode", migration, "--tcp-established", "--move-address",
            f"{env.service}@{env.dev}"]


def _ferryman(migration: str, tcp: bool, extra: tuple[str, ...] = ()) -> Migrator:
    def migrate(env: Env, wl: Workload, run_dir: Path, restored: list[int]) -> Outcome:
        return ferry.migrate(env, wl, run_dir, restored,
                             *ferryman_args(env, migration, tcp=tcp), *extra)
    return migrate


def migrator(cell: Cell, tool: str) -> Migrator:
    """Who moves ``cell``'s workload: ferryman, or CRIU's commands by hand (plain or TLS).

    echo (S3) and redis (S2) cells move live TCP connections and the service address with
    them. Pre-copy has no by-hand baseline yet (its cells run in the QEMU guests).
    """
    tcp = cell.mode in TCP_MODES
    if tool == FERRYMAN:
        return _ferryman(cell.migration, tcp, cell.ferryman_args)
    if cell.migration not in BY_HAND_MIGRATIONS:
        raise BenchError(f"no by-hand baseline for {cell.migration!r} migrations (by hand "
                         f"knows {', '.join(BY_HAND_MIGRATIONS)}): run it with --tools "
                         f"ferryman")
    by_hand = baseline.cold if cell.migration == "cold" else baseline.lazy
    return functools.partial(by_hand, tls=tool == BY_HAND_TLS, tcp=tcp)

