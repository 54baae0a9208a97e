"""Podman on namespace nodes: each node its own Podman state, as on a second machine.

Two nodes on one host would share Podman's storage, database and runc state; here each gets
its own ``containers.conf`` and ``storage.conf`` (passed as ``CONTAINERS_CONF`` and
``CONTAINERS_STORAGE_CONF``): its own graph root, run root, libpod tmp dir, and an OCI runtime
that is runc with a state root of its own (a wrapper script named ``runc``). Containers are
created with a relative cgroup parent, so that runc places them under the cgroup of whoever
runs Podman: the destination's agent runs in cgroups of its own (``cgroup_jail_argv``), and
the restored container lands beside, not into, the frozen original. The image is a busybox
rootfs imported with ``podman import`` on both nodes (no registry is reachable).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.bundle import APPLETS, BUSYBOX
from tests.support.netns import Node

IMAGE = "localhost/fm-busybox:1"
# Rootful Podman keeps its address allocations (netavark's IPAM) here, for the whole host:
# B's agent gets an empty one of its own, as a second machine has.
NETWORK_STATE = Path("/run/containers/networks")
CGROUP_PARENT = "fmtest"  # relative: under the cgroup of the Podman that runs it


@dataclass
class PodmanNode:
    node: Node
    home: Path  # containers.conf, storage.conf, graph root
    run: Path  # run root, tmp dir, runc root (a tmpfs)
    mount_pid: int = 0  # run podman in this process's mount namespace (B's agent)

    @property
    def runc_root(self) -> Path:
        return self.run / "runc"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.home / "containers.conf"),
                "CONTAINERS_STORAGE_CONF": str(self.home / "storage.conf")}

    def podman(self, *args: str, check: bool = True, timeout: float = 120
               ) -> subprocess.CompletedProcess[str]:
        argv = ["podman", *args]
        if self.mount_pid and Path(f"/proc/{self.mount_pid}").exists():
            argv = ["nsenter", "-m", "-t", str(self.mount_pid), "--", *argv]
        res = subprocess.run(self.node.argv(*argv), env=self.env,
                             capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} on {self.node.name}: {res.stderr}")
        return res

    def ps(self, *, all_: bool = False) -> list[dict[str, object]]:
        res = self.podman("ps", "--format", "json", *(("-a",) if all_ else ()))
        data = json.loads(res.stdout or "[]")
        assert isinstance(data, list)
        return data

    def inspect(self, name: str) -> dict[str, object] | None:
        res = self.podman("container", "inspect", name, check=False)
        if res.returncode != 0:
            return None
        data = json.loads(res.stdout)
        return data[0] if data else None

    def clean_containers(self) -> None:
        self.podman("rm", "--all", "--force", "--time", "0", check=False)

    def clean(self) -> None:
        self.clean_containers()
        self.podman("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.run, ignore_errors=True)


def make_node(node: Node, home: Path, run: Path, image_tar: Path) -> PodmanNode:
    """A Podman state for ``node`` under ``home`` and ``run``, with the test image."""
    home.mkdir(parents=True)
    run.mkdir(parents=True)
    wrapper = home / "runc"
    wrapper.write_text(f'#!/bin/sh\nexec runc --root "{run / "runc"}" "$@"\n')
    wrapper.chmod(0o755)
    (home / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{home / "graph"}"\n'
        f'runroot = "{run / "storage"}"\n')
    hard_nproc = os.sysconf("SC_CHILD_MAX")
    (home / "containers.conf").write_text(
        '[containers]\n'
        # podman raises nofile and nproc for root; this sandbox may not raise limits
        f'default_ulimits = ["nofile=1024:1024", "nproc={min(hard_nproc, 4096)}:'
        f'{min(hard_nproc, 4096)}"]\n'
        '[engine]\n'
        'runtime = "fmrunc"\n'
        f'tmp_dir = "{run / "libpod"}"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{home / "events.log"}"\n'
        '[engine.runtimes]\n'
        f'fmrunc = ["{wrapper}"]\n')
    p = PodmanNode(node, home, run)
    p.podman("import", str(image_tar), IMAGE)
    return p


def busybox_tar(path: Path) -> Path:
    """A rootfs tarball: busybox-static and the applets the tests run, /data to write in."""
    if not BUSYBOX.exists():
        raise RuntimeError("busybox-static is not installed: run 'make setup'")
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "data", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755 if d != "tmp" else 0o1777
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in (*APPLETS, "awk"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
    return path
