"""S3 as a runc container (mode ``runc-echo``): the echo service in a busybox container.

The container is the integration tests' (tests/support/bundle.py): a busybox-static rootfs
running ``nc -l -p 7000 -e cat`` in node A's network namespace, stdio as pipes, under a runc
root of the run's own. Its bundle lives in the benchmark's ``only-on-a`` directory, which
node B does not see: B is a process holding a mount namespace of its own in which that
directory is an empty tmpfs, in cgroups of its own (tests/support/bundle.py's jail), so B
gets the container's files only by copying them and restores it beside, not into, the
frozen original — as a second machine would. Everything "on B" (ferryman's agent, by hand's
``rsync``, ``criu lazy-pages`` and ``runc restore``) runs inside that namespace
(:meth:`Box.on_b`), with B's own runc root.

Who migrates: ferryman (``ferryman migrate --runc ID --runc-root ROOT_A …`` in A, the agent
with ``--runc-root ROOT_B``), or bench/baseline_runc.py (runc's commands by hand).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.bundle import (
    cgroup_jail_argv,
    make_bundle,
    run_container,
)

from bench import baseline_runc, ferry
from bench.box import Box
from bench.cell import BY_HAND_MIGRATIONS, Cell, ferryman_args
from bench.env import Env, Outcome
from bench.proc import BenchError, stop
from bench.service import Move, Server
from bench.stats import BY_HAND, FERRYMAN
from bench.tcpecho import PORT, EchoClient

ARGS = ["nc", "-l", "-p", str(PORT), "-e", "cat"]  # one connection, then `cat` on it
TOOLS = (FERRYMAN, BY_HAND)  # runc has no TLS flags: see bench/README.md


def _b_side(env: Env, hidden: Path, jail: str) -> subprocess.Popen[bytes]:
    """B's mount namespace, ``hidden`` an empty tmpfs there, in B's network and cgroups."""
    b = env.topo["b"]
    holder = b.popen(*cgroup_jail_argv(jail), "unshare", "-m", "--propagation", "slave",
                     "sh", "-c", 'mount -t tmpfs tmpfs "$1" && exec sleep infinity', "sh",
                     str(hidden), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + min(env.timeout, 30)
    cmdline = Path(f"/proc/{holder.pid}/cmdline")
    while not cmdline.read_bytes().startswith(b"sleep\0"):  # exec'd: the tmpfs is there
        if holder.poll() is not None or time.monotonic() > deadline:
            stop(holder)
            raise BenchError(f"B's mount namespace did not come up ({holder.returncode})")
        time.sleep(0.01)
    return holder


@dataclass
class BoxServer(Server):
    box: Box | None = None


class RuncEcho(EchoClient):
    """The echo server as a runc container."""

    what = "echo container"

    def start(self, env: Env, run_dir: Path, ip: str, rep: int) -> Server:
        del ip, rep
        hidden = env.tmp / "only-on-a"
        hidden.mkdir(exist_ok=True)
        cid = run_dir.name  # "runc-echo-cold-1-ferryman": unique in the benchmark
        jail = f"fm-bench-{os.getpid()}-{cid}"
        box = Box(cid, hidden / cid, run_dir / "runc-a", run_dir / "runc-b", jail,
                  _b_side(env, hidden, jail))
        try:
            a = env.topo["a"]
            make_bundle(box.bundle, ARGS, a)
            container = run_container(a, box.root_a, box.bundle, cid)
            a.wait_listening(PORT, timeout=min(env.timeout, 60))
            pid = container.pid
        except BaseException:
            box.delete()
            raise
        return BoxServer(pid, box.delete, box=box)

    def move(self, cell: Cell, tool: str, server: Server) -> Move:
        if not isinstance(server, BoxServer) or server.box is None:
            raise BenchError("not a container server")
        box = server.box
        if tool == FERRYMAN:
            def by_ferryman(env: Env, run_dir: Path, restored: list[int]) -> Outcome:
                return ferry.run(env, run_dir, restored,
                                 ["--runc", box.id, "--runc-root", str(box.root_a)],
                                 ferryman_args(env, cell.migration, tcp=True),
                                 on_b=box.on_b, agent_args=("--runc-root", str(box.root_b)))
            return by_ferryman
        if tool != BY_HAND or cell.migration not in BY_HAND_MIGRATIONS:
            raise BenchError(f"no {tool} baseline for {cell.migration} runc containers "
                             f"(runc-echo runs {', '.join(TOOLS)})")
        by_hand = baseline_runc.cold if cell.migration == "cold" else baseline_runc.lazy

        def typed(env: Env, run_dir: Path, restored: list[int]) -> Outcome:
            return by_hand(env, box, run_dir, restored)
        return typed

