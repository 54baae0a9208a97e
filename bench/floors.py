"""Physical floors measured in the same run: memcpy bandwidth and one-stream TCP A→B."""

from __future__ import annotations

import json
import mmap
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.support.netns import Node

from bench.proc import PY, REPO, BenchError, run_timed, stop
from ferryman.host.prefault import populate

MIB = 1 << 20
FIRST_TOUCH_MIB = 128  # small: see first_touch


@dataclass
class Floor:
    name: str
    what: str
    bytes_per_s: float | None = None  # best of the repetitions
    samples: list[float] = field(default_factory=list)  # bytes per second, each repetition
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def first_touch(mib: int = FIRST_TOUCH_MIB) -> Floor:
    """How fast this node's free memory is made resident: ``mib`` MiB of fresh anonymous memory
    populated once (``ferryman.host.prefault.populate``, the agent's own way). Not a floor of
    the migration but the state of the machine that swings its restore: in a VM whose balloon
    reports free pages, memory the hypervisor took back faulted in at 0.34-0.38 GB/s here,
    recently freed memory at 2-3 GB/s (docs/ARCHITECTURE.md, "Memory made resident before the
    freeze"). Small, so that it does not itself make much memory resident for the runs after
    it."""
    f = Floor("first-touch", f"{mib} MiB of fresh anonymous memory made resident, once")
    n = mib * MIB
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        t0 = time.perf_counter()
        populate(m)
        f.bytes_per_s = n / (time.perf_counter() - t0)
    finally:
        m.close()
    f.samples = [f.bytes_per_s]
    return f


def memcpy(mib: int = 256, reps: int = 5) -> Floor:
    """Copy ``mib`` MiB between two already-faulted buffers (a plain memcpy), best of ``reps``."""
    f = Floor("memcpy", f"{mib} MiB bytearray→bytearray copy in one process, best of {reps}")
    n = mib * MIB
    src = bytearray(b"\x5a" * n)
    dst = bytearray(n)  # zero-filled: every page touched before the first timing
    dst[:] = src
    s, d = memoryview(src), memoryview(dst)
    for _ in range(reps):
        t0 = time.perf_counter()
        d[:] = s
        f.samples.append(n / (time.perf_counter() - t0))
    f.bytes_per_s = max(f.samples)
    return f


def tcp(src: Node, dst: Node, mib: int = 1024, reps: int = 3, port: int = 27999,
        timeout: float = 120.0) -> Floor:
    """One TCP stream from ``src`` to ``dst`` across the veth/bridge, best of ``reps``."""
    f = Floor("tcp", f"{mib} MiB, one TCP stream {src.ip} → {dst.ip} over the bridge, "
                     f"best of {reps}")
    for i in range(reps):
        p = port - i
        recv = dst.popen(PY, "-m", "bench.tcpfloor", "recv", dst.ip, str(p), cwd=REPO,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
        try:
            dst.wait_listening(p, timeout=30, proc=recv)
            res = run_timed(src.argv(PY, "-m", "bench.tcpfloor", "send", dst.ip, str(p),
                                     str(mib * MIB)), timeout).check("tcp sender")
            data = json.loads(res.stdout)
            f.samples.append(float(data["bytes"]) / float(data["seconds"]))
            recv.wait(30)
        except (BenchError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
            f.error = str(exc)
        finally:
            stop(recv)
    f.bytes_per_s = max(f.samples) if f.samples else None
    return f
