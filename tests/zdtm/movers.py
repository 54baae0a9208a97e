"""The two ways a zdtm test moves from node A to node B: CRIU typed by hand, and ferryman.

By hand is the benchmarks' reference (bench/baseline.py: ``criu page-server`` or a lazy dump,
``cp`` of the images, ``criu restore -d`` on B, with CRIU's TLS and the cluster certificates,
``--tcp-established --network-lock nftables`` where the test has live connections, as its
zdtm description asks). Ferryman is ``ferryman migrate`` to B's agent over mutual TLS, with
the same ``--tcp-established`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import baseline
from bench.env import Env
from bench.proc import BenchError

from ferryman.criu.logs import first_error
from tests.integration.conftest import Agent, Cluster
from tests.support.workloads import Workload

MODES = ("cold", "postcopy")
TOOLS = ("by hand", "ferryman")


@dataclass(frozen=True, slots=True)
class Moved:
    """Where the test runs after a migration (its init's PID on B), or why it does not."""

    pid: int | None
    error: str | None = None


Mover = Callable[[Workload, Path], Moved]

def _hand_reason(run_dir: Path, exc: BenchError) -> str:
    """CRIU's first error: a lazy dump's (it logs to a file), else the failing command's."""
    msg = first_error(run_dir / "dump.stderr")
    return f"criu dump --lazy-pages: {msg}" if msg else str(exc)


def by_hand(env: Env, mode: str, *, tcp: bool) -> Mover:
    migrate = baseline.cold if mode == "cold" else baseline.lazy

    def move(wl: Workload, run_dir: Path) -> Moved:
        restored: list[int] = []
        try:
            migrate(env, wl, run_dir, restored, tls=True, tcp=tcp)
        except BenchError as exc:
            return Moved(restored[0] if restored else None, _hand_reason(run_dir, exc))
        return Moved(restored[0])

    return move


def _ferry_reason(report: dict[str, object], stderr: str) -> str:
    """ferryman's one-line error (it quotes CRIU's first error)."""
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return str(report.get("error") or (lines[-1] if lines else "no error message"))


def by_ferryman(cluster: Cluster, dest: Agent, mode: str, *, tcp: bool) -> Mover:
    extra = ("--mode", mode, *(("--tcp-established",) if tcp else ()))

    def move(wl: Workload, run_dir: Path) -> Moved:
        res, report = cluster.migrate(wl.pid, dest, *extra)
        (run_dir / "ferryman.stderr").write_text(res.stderr)
        pid = report.get("destination_pid")
        if res.returncode == 0 and isinstance(pid, int):
            return Moved(pid)
        return Moved(pid if isinstance(pid, int) else None, _ferry_reason(report, res.stderr))

    return move
