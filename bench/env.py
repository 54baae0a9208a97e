"""What every benchmark run shares: the namespace nodes, the PKI, the temp dir, limits."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.netns import Topology
from tests.support.workloads import Workload

AGENT_PORT = 7070


@dataclass
class Env:
    topo: Topology
    pki: Path
    tmp: Path  # everything of this benchmark lives below; its path marks our processes
    criu: str
    timeout: float  # limit for every single wait (a command, a status answer, a listen)
    ports: Iterator[int] = field(default_factory=lambda: itertools.count(27100))
    # S3: the service address ("IP/PREFIX") the echo server listens on and that moves with
    # it, on device ``dev`` of every node; how by hand sends its gratuitous ARP: "arping"
    # (iputils' arping -U) or "python" (bench/garp.py, when arping cannot be installed).
    service: str | None = None
    dev: str = "eth0"
    garp: str = "arping"
    redis_keys: int = 10**6  # S2: keys loaded into redis-server before each migration
    keep_images: bool = False  # --keep-tmp: leave every run's CRIU images on disk
    warm_state: bool = False  # --warm-state: ferryman's state dir on A shared by every run
    serve_args: tuple[str, ...] = ()  # --serve-args: added to every `ferryman serve` on B
    # --source-agent: an agent on A (started once) whose launcher runs every ferryman command
    source_agent: bool = False
    a_agent: subprocess.Popen[bytes] | None = None
    a_pid: int = 0  # a process living in A's network namespace (its /proc/PID/net/dev)


@dataclass
class Outcome:
    """What a migrator measured; the workload-observed downtime is measured around it."""

    total_ms: float  # wall time of the migration as its user sees it
    bytes_moved: int | None
    # post-copy: from the workload resuming on the destination until every page is there
    memory_complete_ms: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    started_wall: float | None = None  # time.time() when total_ms started


# A migrator moves ``workload`` from node a to node b, using ``run_dir`` for its files, and
# appends every restored PID to ``restored`` as soon as it knows it (for cleanup).
Migrator = Callable[[Env, Workload, Path, list[int]], Outcome]
