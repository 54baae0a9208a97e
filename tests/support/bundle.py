"""runc containers for integration tests: a busybox-static rootfs bundle and its lifecycle.

The bundle is made from scratch (``runc spec`` for the runtime's defaults, then our process,
a writable rootfs and the network namespace of a test node); the container runs detached with
its stdio as pipes (CRIU cannot move a host file or a console), in the node's network
namespace, under a runc root of the test's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.netns import NETNS_DIR, Node

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "cat", "echo", "nc", "usleep", "sleep", "ls", "tail")


def make_bundle(bundle: Path, args: list[str], node: Node) -> Path:
    """A bundle at ``bundle`` running ``args`` (busybox applets) in ``node``'s network."""
    if not BUSYBOX.exists():
        raise RuntimeError("busybox-static is not installed: run 'make setup'")
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "data").mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    config["root"]["readonly"] = False
    config["linux"]["namespaces"] = [
        {"type": "network", "path": str(NETNS_DIR / node.name)} if ns["type"] == "network"
        else ns for ns in config["linux"]["namespaces"]]
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    return bundle


@dataclass
class Container:
    id: str
    root: Path
    bundle: Path

    def state(self) -> dict[str, object] | None:
        res = subprocess.run(["runc", "--root", str(self.root), "state", self.id],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            return None
        data: dict[str, object] = json.loads(res.stdout)
        return data

    @property
    def pid(self) -> int:
        st = self.state()
        assert st is not None, f"container {self.id} is gone"
        return int(st["pid"])  # type: ignore[call-overload]

    def delete(self) -> None:
        with contextlib.suppress(OSError):
            (self.root / self.id / "checkpoint").unlink()
        subprocess.run(["runc", "--root", str(self.root), "delete", "--force", self.id],
                       capture_output=True, check=False)


def run_container(node: Node, root: Path, bundle: Path, cid: str) -> Container:
    """``runc run --detach`` in ``node``, stdio as pipes (read ends closed: nothing is read)."""
    fds = [os.pipe() for _ in range(3)]
    try:
        res = subprocess.run(node.argv("runc", "--root", str(root), "run", "--detach",
                                       "--bundle", str(bundle), cid),
                             stdin=fds[0][0], stdout=fds[1][1], stderr=fds[2][1],
                             timeout=60, check=False)
    finally:
        for r, w in fds:
            os.close(r)
            os.close(w)
    c = Container(cid, root, bundle)
    if res.returncode != 0 or c.state() is None:
        raise RuntimeError(f"runc run {cid} failed ({res.returncode})")
    return c


def wait_for(predicate: object, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def cgroup_jail_argv(name: str) -> list[str]:
    """A prefix that runs a command in child cgroups ``name`` of its own, in every cgroup v1
    hierarchy: runc places a container's cgroups under its own (no cgroupsPath), so a second
    agent on the same host restores the container beside, not into, the frozen original."""
    script = r"""
name=$1; shift
for d in /sys/fs/cgroup/*/; do
  ctrl=$(basename "$d")
  [ "$ctrl" = unified ] && continue
  key=$ctrl; [ "$ctrl" = systemd ] && key=name=systemd
  own=$(awk -F: -v k="$key" '$2==k {print $3}' /proc/self/cgroup)
  [ -n "$own" ] || continue
  dir=$(echo "$d/$own/$name" | sed 's#//*#/#g')
  mkdir -p "$dir"
  if [ -f "$dir/cpuset.cpus" ]; then
    cat "$(dirname "$dir")/cpuset.cpus" > "$dir/cpuset.cpus"
    cat "$(dirname "$dir")/cpuset.mems" > "$dir/cpuset.mems"
  fi
  echo $$ > "$dir/cgroup.procs"
done
exec "$@"
"""
    return ["sh", "-c", script, "sh", name]


def remove_cgroup_jail(name: str) -> None:
    """Remove the (empty) cgroups of :func:`cgroup_jail_argv`, deepest first."""
    root = Path("/sys/fs/cgroup")
    for d in sorted(root.glob(f"*/**/{name}"), key=lambda p: -len(p.parts)):
        for sub in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
