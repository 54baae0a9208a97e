"""Network-namespace "hosts" for integration tests: nodes on a private bridge.

Each node is a network namespace with a veth into a switch namespace holding a bridge, so
nothing touches the host's own network. Addresses come from 10.77.<net>.0/24 inside these
namespaces only. Enter a node with ``nsenter --net=/var/run/netns/NAME`` (not ``ip netns exec``,
which adds a mount namespace CRIU would then have to dump).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")
_TOPOLOGIES = itertools.count()


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


@dataclass
class Node:
    name: str  # namespace name
    ip: str
    veth: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def argv(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--net={NETNS_DIR / self.name}", "--", *cmd]

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*self.argv(*cmd), check=check)

    def popen(self, *cmd: str, **kw: object) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(self.argv(*cmd), **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def listening(self, port: int) -> bool:
        out = self.run("cat", "/proc/net/tcp", "/proc/net/tcp6").stdout
        hexport = f":{port:04X}"
        return any(len(c) > 3 and c[1].endswith(hexport) and c[3] == "0A"
                   for c in (line.split() for line in out.splitlines()[1:]))

    def wait_listening(self, port: int, timeout: float = 20.0,
                       proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not self.listening(port):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{self.name}: process exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: nothing listens on port {port}")
            time.sleep(0.05)

    def link(self, up: bool) -> None:
        self.run("ip", "link", "set", self.veth, "up" if up else "down")

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()


class Topology:
    """Nodes ``names`` on one bridge; ``close()`` removes everything, even after failures."""

    def __init__(self, names: tuple[str, ...] = ("a", "b", "c"), net: int | None = None) -> None:
        # A second Topology of this process (the fuzzer's conftest has its own) gets names of
        # its own: namespaces are global.
        n = next(_TOPOLOGIES)
        self.tag = f"fm{os.getpid() % 10000}" + (f"x{n}" if n else "")
        self.net = net if net is not None else 77
        self.switch = f"{self.tag}sw"
        self.nodes: dict[str, Node] = {}
        try:
            sh("ip", "netns", "add", self.switch)
            sw = ["nsenter", f"--net={NETNS_DIR / self.switch}", "--"]
            sh(*sw, "ip", "link", "add", "br0", "type", "bridge")
            sh(*sw, "ip", "link", "set", "br0", "up")
            for i, n in enumerate(names, start=1):
                ns = f"{self.tag}{n}"
                node = Node(ns, f"10.{self.net}.0.{i}", "eth0")
                sh("ip", "netns", "add", ns)
                peer = f"{self.tag}{n}p"
                sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name",
                   peer, "netns", self.switch)
                sh(*sw, "ip", "link", "set", peer, "master", "br0", "up")
                node.run("ip", "addr", "add", f"{node.ip}/24", "dev", "eth0")
                node.run("ip", "link", "set", "eth0", "up")
                node.run("ip", "link", "set", "lo", "up")
                self.nodes[n] = node
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop_all()
        for node in self.nodes.values():
            sh("ip", "netns", "del", node.name, check=False)
        with contextlib.suppress(Exception):
            sh("ip", "netns", "del", self.switch, check=False)
