"""The two ways a zdtm test moves from node A to node B: CRIU typed by hand, and ferryman.

By hand is the benchmarks' reference (bench/baseline.py: ``criu page-server`` or a lazy dump,
``cp`` of the images, ``criu restore -d`` on B, with CRIU's TLS and the cluster certificates,
``--tcp-established --network-lock nftables`` where the test has live connections, as its
zdtm description asks). Ferryman is ``ferryman migrate`` to B's agent over mutual TLS, with
the same ``--tcp-established`` and nothing else.

On the host, pre-copy and hybrid move by ferryman only. On its kernel (no soft-dirty) the
dirty pages are tracked by one async write-protect userfaultfd per process, which must be held from
the first ``criu pre-dump`` to the final ``criu dump --track-mem-uffd``: ferryman's agent
holds them (ferryman.host.wptrack); CRIU typed by hand cannot (each command exits, and with
the last reference the kernel drops every protection). Their reference is the test moved
cold by hand (``REFERENCE``): what moves cold must move pre-copied too. The QEMU guests
(Debian's kernel, soft-dirty) move them by hand as well (``GUEST_MODES``, tests/zdtm/guests.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import baseline
from bench.env import Env
from bench.proc import BenchError

from ferryman.criu.logs import first_error
from ferryman.criu.rpc import HAS_TRACK_MEM_UFFD
from ferryman.host import wptrack
from tests.integration.conftest import Agent, Cluster
from tests.support.workloads import Workload

MODES = ("cold", "postcopy", "precopy", "hybrid")  # on this host (namespace nodes)
# in the QEMU guests (tests/zdtm/guests.py): soft-dirty, so by hand too
GUEST_MODES = ("vm-precopy", "vm-hybrid")
ALL_MODES = (*MODES, *GUEST_MODES)
HAND_MODES = ("cold", "postcopy", *GUEST_MODES)  # what CRIU typed by hand can do there
REFERENCE = {"cold": "cold", "postcopy": "postcopy", "precopy": "cold", "hybrid": "cold",
             "vm-precopy": "vm-precopy", "vm-hybrid": "vm-hybrid"}
TOOLS = ("by hand", "ferryman")
PRECOPY_MODES = ("precopy", "hybrid")  # the dirty pages tracked between pre-dumps


def precopy_unavailable() -> str | None:
    """Why the uffd-wp tracker cannot run here (None when it can): pre-copy and hybrid need
    the kernel's userfaultfd async write-protect and criu's --track-mem-uffd."""
    if wptrack.kernel_supports() and HAS_TRACK_MEM_UFFD:
        return None
    return ("no uffd-wp dirty tracker here: needs Linux 6.7+ with userfaultfd async "
            "write-protect (x86-64) and the criu scripts/install-criu.sh builds")


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
    if mode not in ("cold", "postcopy"):
        raise ValueError(f"no {mode} by hand on this kernel: use cold or postcopy")
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


def not_precopied(mode: str, report: dict[str, object]) -> str | None:
    """Why a committed ``mode`` migration did not pre-copy as asked (None when it did): at
    least one pre-dump, the pages tracked by a dirty tracker."""
    mode = mode.removeprefix("vm-")
    if mode not in PRECOPY_MODES:
        return None
    iterations = report.get("iterations")
    if not isinstance(iterations, list) or not iterations:
        return f"--mode {mode} committed without a pre-dump"
    if not report.get("dirty_tracker"):
        return f"--mode {mode} committed without a dirty-page tracker"
    return None


def by_ferryman(cluster: Cluster, dest: Agent, mode: str, *, tcp: bool) -> Mover:
    extra = ("--mode", mode, *(("--tcp-established",) if tcp else ()))

    def move(wl: Workload, run_dir: Path) -> Moved:
        res, report = cluster.migrate(wl.pid, dest, *extra)
        (run_dir / "ferryman.stderr").write_text(res.stderr)
        (run_dir / "ferryman.json").write_text(json.dumps(report, indent=1))
        pid = report.get("destination_pid")
        if res.returncode == 0 and isinstance(pid, int):
            return Moved(pid, not_precopied(mode, report))
        return Moved(pid if isinstance(pid, int) else None, _ferry_reason(report, res.stderr))

    return move
