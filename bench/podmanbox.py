"""S3 and S2 as Podman containers (modes ``podman-echo`` and ``podman-redis``).

Each run gets two Podman states of its own, as two machines have (tests/support/podman.py:
``CONTAINERS_CONF`` and ``CONTAINERS_STORAGE_CONF`` with their own graph root, run root and a
runc with its own state root), and the image imported into both with ``podman import``
(no registry is reachable): the integration tests' busybox rootfs, plus, for redis, this
host's ``redis-server`` and the libraries ``ldd`` names. The container runs in the host
network of node A (``--network host``), with a relative cgroup parent; node B is a process
holding a mount namespace of its own (Podman's network state ``/run/containers/networks``
an empty tmpfs there) in cgroups of its own, in which B's agent and B's ``podman`` run, so
the restored container lands beside, not into, the frozen original.

Who migrates: ferryman (``ferryman migrate --podman NAME --runc-root ROOT_A …`` in A, the
agent in B with B's Podman configuration), or Podman's own checkpoint/export → copy →
restore/import typed by hand (bench/baseline_podman.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.bundle import cgroup_jail_argv, remove_cgroup_jail
from tests.support.podman import (
    CGROUP_PARENT,
    IMAGE,
    NETWORK_STATE,
    PodmanNode,
    busybox_tar,
    make_node,
)

from bench import baseline_podman, ferry, redis
from bench.cell import Cell, ferryman_args
from bench.env import Env, Outcome
from bench.proc import REPO, BenchError, stop
from bench.service import Move, Server
from bench.stats import BY_HAND, FERRYMAN
from bench.tcpecho import PORT, EchoClient

TOOLS = (FERRYMAN, BY_HAND)  # by hand = Podman's own export/import (no TLS flags)
ECHO_ARGS = ("nc", "-l", "-p", str(PORT), "-e", "cat")  # one connection, then `cat` on it


def _redis_args(ip: str) -> tuple[str, ...]:
    return ("redis-server", "--bind", ip, "--port", str(redis.PORT), "--protected-mode", "no",
            "--save", "", "--appendonly", "no", "--daemonize", "no")


def _add_dir(tar: tarfile.TarFile, name: str, seen: set[str]) -> None:
    parts = name.split("/")
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d and d not in seen:
            seen.add(d)
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)


def redis_tar(path: Path) -> Path:
    """The busybox rootfs plus ``redis-server`` and every library ``ldd`` lists for it."""
    busybox_tar(path)
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed (S2 installs it: run with S2 too)")
    real = Path(binary).resolve()
    ldd = subprocess.run(["ldd", str(real)], capture_output=True, text=True, check=True).stdout
    libs = [w for line in ldd.splitlines() for w in line.split() if w.startswith("/")]
    seen = {"bin", "data", "etc", "tmp"}
    with tarfile.open(path, "a") as tar:
        for src, dst in [(str(real), "usr/bin/redis-server"), *((lib, lib.lstrip("/"))
                                                                for lib in libs)]:
            _add_dir(tar, str(Path(dst).parent), seen)
            tar.add(os.path.realpath(src), arcname=dst)
    return path


@dataclass
class PodBox:
    """One run's Podman states on A and B, B's namespace holder, and the container."""

    name: str
    a: PodmanNode
    b: PodmanNode
    jail: str
    holder: subprocess.Popen[bytes]
    run: Path  # both nodes' run roots below (tmpfs)

    def _env(self, node: PodmanNode) -> list[str]:
        return ["env", f"CONTAINERS_CONF={node.home / 'containers.conf'}",
                f"CONTAINERS_STORAGE_CONF={node.home / 'storage.conf'}"]

    def on_a(self, *cmd: str) -> list[str]:
        """``cmd`` in A's network namespace with A's Podman configuration."""
        return self.a.node.argv(*self._env(self.a), *cmd)

    def on_b(self, *cmd: str) -> list[str]:
        """``cmd`` on B: B's network and mount namespaces, B's cgroups (the holder's, joined
        by one shell's ``echo $$ >`` builtins: a few ms, so that by hand's commands pay no
        more for being "on B" than the agent's do), B's Podman."""
        joins = "; ".join(f'echo $$ > "{f}"' for f in _cgroup_procs(self.holder.pid))
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", f"--wd={REPO}", "--",
                "sh", "-c", f'{joins}; exec "$@"', "sh", *self._env(self.b), *cmd]

    def pid_on_b(self) -> int:
        res = subprocess.run(self.on_b("podman", "container", "inspect", self.name),
                             capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise BenchError(f"podman inspect {self.name} on B: {res.stderr.strip()[-200:]}")
        pid = json.loads(res.stdout)[0]["State"]["Pid"]
        if not isinstance(pid, int) or pid <= 0:
            raise BenchError(f"podman on B says {self.name} has no process ({pid!r})")
        return pid

    def delete(self) -> None:
        subprocess.run(self.on_b("podman", "rm", "--all", "--force", "--time", "0"),
                       capture_output=True, timeout=120, check=False)
        self.a.clean_containers()
        stop(self.holder)
        for node in (self.a, self.b):
            node.podman("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.run, ignore_errors=True)
        time.sleep(0.1)  # the jail's cgroups empty once the holder has gone
        remove_cgroup_jail(self.jail)


def _cgroup_procs(pid: int) -> list[str]:
    """The ``cgroup.procs`` files of ``pid``'s cgroups in every v1 hierarchy."""
    own: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(","):
            own[c] = path
    out = []
    for d in sorted(Path("/sys/fs/cgroup").iterdir()):
        key = "name=systemd" if d.name == "systemd" else d.name
        if d.name != "unified" and key in own and (d / "cgroup.procs").exists():
            out.append(str(d / own[key].lstrip("/") / "cgroup.procs"))
    return out


def _holder(env: Env, jail: str) -> subprocess.Popen[bytes]:
    """B's mount namespace (Podman's network state empty there), network and cgroups."""
    b = env.topo["b"]
    d = NETWORK_STATE
    holder = b.popen(*cgroup_jail_argv(jail), "unshare", "-m", "--propagation", "slave",
                     "sh", "-c", f'mkdir -p "{d}" && mount -t tmpfs tmpfs "{d}" && '
                     "exec sleep infinity", stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + min(env.timeout, 30)
    cmdline = Path(f"/proc/{holder.pid}/cmdline")
    while not cmdline.read_bytes().startswith(b"sleep\0"):
        if holder.poll() is not None or time.monotonic() > deadline:
            stop(holder)
            raise BenchError(f"B's mount namespace did not come up ({holder.returncode})")
        time.sleep(0.01)
    return holder


def _image(env: Env, kind: str) -> Path:
    """The rootfs tarball, built once per benchmark."""
    path = env.tmp / f"podman-{kind}.tar"
    if not path.exists():
        (redis_tar if kind == "redis" else busybox_tar)(path)
    return path


def start_box(env: Env, run_dir: Path, kind: str, args: tuple[str, ...], port: int) -> PodBox:
    """Both Podman states, the image on both, the container running on A and listening."""
    name = run_dir.name  # "podman-echo-cold-1-ferryman": unique in the benchmark
    jail = f"fm-bench-{os.getpid()}-{name}"
    run = Path("/run") / f"fm-bench-{os.getpid()}-{name}"
    image = _image(env, kind)
    holder = _holder(env, jail)
    try:
        a = make_node(env.topo["a"], run_dir / "podman-a", run / "a", image)
        b = make_node(env.topo["b"], run_dir / "podman-b", run / "b", image)
    except BaseException:
        stop(holder)
        shutil.rmtree(run, ignore_errors=True)
        remove_cgroup_jail(jail)
        raise
    box = PodBox(name, a, b, jail, holder, run)
    try:
        a.podman("run", "--detach", "--name", name, "--network", "host", "--cgroup-parent",
                 CGROUP_PARENT, IMAGE, *args)
        env.topo["a"].wait_listening(port, timeout=min(env.timeout, 60))
    except BaseException:
        box.delete()
        raise
    return box


@dataclass
class PodServer(Server):
    box: PodBox | None = None


def _server(box: PodBox) -> PodServer:
    info = box.a.inspect(box.name)
    state = (info or {}).get("State")
    pid = state.get("Pid") if isinstance(state, dict) else None
    if not isinstance(pid, int) or pid <= 0:
        box.delete()
        raise BenchError(f"podman on A says {box.name} has no process")
    return PodServer(pid, box.delete, box=box)


def _move(cell: Cell, tool: str, server: Server) -> Move:
    if not isinstance(server, PodServer) or server.box is None:
        raise BenchError("not a Podman container server")
    box = server.box
    if tool == FERRYMAN:
        def by_ferryman(env: Env, run_dir: Path, restored: list[int]) -> Outcome:
            return ferry.run(env, run_dir, restored,
                             ["--podman", box.name, "--runc-root", str(box.a.runc_root)],
                             ferryman_args(env, cell.migration, tcp=True),
                             on_b=box.on_b, on_a=box.on_a,
                             agent_args=("--runc-root", str(box.b.runc_root)))
        return by_ferryman
    if tool != BY_HAND:
        raise BenchError(f"no {tool} baseline for Podman containers "
                         f"(Podman's own export/import runs as {BY_HAND})")

    def typed(env: Env, run_dir: Path, restored: list[int]) -> Outcome:
        return baseline_podman.export_import(env, box, run_dir, restored, port=_port(cell))
    return typed


def _port(cell: Cell) -> int:
    return redis.PORT if cell.mode == "podman-redis" else PORT


class PodmanEcho(EchoClient):
    """S3's echo service as a Podman container."""

    what = "echo container (Podman)"

    def start(self, env: Env, run_dir: Path, ip: str, rep: int) -> Server:
        del ip, rep
        return _server(start_box(env, run_dir, "busybox", ECHO_ARGS, PORT))

    def move(self, cell: Cell, tool: str, server: Server) -> Move:
        return _move(cell, tool, server)


class PodmanRedis(redis.Redis):
    """S2's redis-server as a Podman container, loaded and under the same load."""

    what = "redis-server container (Podman)"

    def start(self, env: Env, run_dir: Path, ip: str, rep: int) -> Server:
        del rep
        box = start_box(env, run_dir, "redis", _redis_args(ip), redis.PORT)
        return redis.prepare(env, ip, _server(box))

    def move(self, cell: Cell, tool: str, server: Server) -> Move:
        return _move(cell, tool, server)
