"""Real services nobody on the team wrote, moved between the node namespaces by real agents.

Debian's redis-server, nginx (master and two workers) and memcached (four threads) each run
in node A in a PID namespace of their own, listening on every address. The test gives each
some state through its own protocol, moves it in each mode this kernel allows, and asks it
for that state again at node B's address: the service answers there with what it held, and
nothing of it is left on A. scripts/setup.sh installs the three (the CI runs this too).

They run as root: this machine lacks CAP_SYS_RESOURCE, without which CRIU cannot dump a
process of another user (see README.md), so nginx's workers get ``user root`` and memcached
``-u root``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ferryman.criu.rpc import HAS_TRACK_MEM_UFFD
from ferryman.host import wptrack
from tests.integration.conftest import Cluster
from tests.support.netns import Node
from tests.support.workloads import alive, children, kill_launched

MODES = ["cold", "postcopy"] + (
    ["precopy", "hybrid"] if wptrack.kernel_supports() and HAS_TRACK_MEM_UFFD else [])


def ask(node: Node, port: int, request: bytes, until: bytes, timeout: float = 10.0) -> bytes:
    """``request`` sent to ``port`` at ``node``'s address from inside its namespace (a
    client there), and everything read back until ``until`` has arrived."""
    code = (
        "import socket, sys\n"
        f"s = socket.create_connection(({node.ip!r}, {port}), timeout={timeout})\n"
        f"s.sendall({request!r})\n"
        "got = b''\n"
        f"while {until!r} not in got:\n"
        "    chunk = s.recv(65536)\n"
        "    if not chunk: break\n"
        "    got += chunk\n"
        "sys.stdout.buffer.write(got)\n")
    res = subprocess.run(node.argv("python3", "-c", code), capture_output=True, timeout=30,
                         check=False)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return res.stdout


@dataclass(frozen=True)
class Service:
    name: str
    binary: str
    port: int
    argv: Callable[[Path], list[str]]
    fill: Callable[[Node], None]  # gives it state, through its own protocol
    state: Callable[[Node], bytes]  # reads that state back


def _redis_fill(node: Node) -> None:
    ask(node, 6390, b"DEBUG POPULATE 200000 key 64\r\nSET moved yes\r\n", b"+OK\r\n+OK\r\n")


def _redis_state(node: Node) -> bytes:
    return ask(node, 6390, b"DBSIZE\r\nGET moved\r\n", b"yes\r\n")


def _nginx_argv(tmp: Path) -> list[str]:
    (tmp / "html").mkdir()
    (tmp / "html" / "index.html").write_text("served by nginx\n")
    conf = tmp / "nginx.conf"
    conf.write_text(f"""user root;
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {tmp}/access.log;
  server {{ listen 8083; root {tmp}/html; }}
}}
""")
    return ["nginx", "-c", str(conf)]


def _nginx_state(node: Node) -> bytes:
    answer = ask(node, 8083, b"GET / HTTP/1.0\r\n\r\n", b"served by nginx\n")
    return answer[answer.index(b"\r\n\r\n"):]


def _memcached_fill(node: Node) -> None:
    ask(node, 11311, b"set moved 0 0 5\r\nhello\r\nset other 0 0 3\r\nabc\r\n",
        b"STORED\r\nSTORED\r\n")


def _memcached_state(node: Node) -> bytes:
    return ask(node, 11311, b"get moved other\r\n", b"END\r\n")


SERVICES = [
    Service("redis", "redis-server", 6390,
            lambda tmp: ["redis-server", "--port", "6390", "--save", "", "--appendonly", "no",
                         "--protected-mode", "no", "--enable-debug-command", "yes",
                         "--dir", str(tmp)],
            _redis_fill, _redis_state),
    Service("nginx", "nginx", 8083, _nginx_argv, lambda node: None, _nginx_state),
    Service("memcached", "memcached", 11311,
            lambda tmp: ["memcached", "-u", "root", "-p", "11311", "-t", "4", "-m", "64"],
            _memcached_fill, _memcached_state),
]


@contextlib.contextmanager
def running(node: Node, svc: Service, tmp: Path) -> Iterator[int]:
    """``svc`` started in ``node`` in its own PID namespace; yields its host PID."""
    if shutil.which(svc.binary) is None:
        pytest.fail(f"{svc.binary} is missing: run 'make setup' (scripts/setup.sh installs it)")
    launcher = node.popen("unshare", "-p", "-f", "setsid", *svc.argv(tmp), cwd=tmp,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    pid = 0
    try:
        node.wait_listening(svc.port, proc=launcher)
        kids = children(launcher.pid)
        assert kids, "the service did not start"
        pid = kids[0]
        yield pid
    finally:
        kill_launched(pid, launcher)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("svc", SERVICES, ids=[s.name for s in SERVICES])
def test_a_real_service_answers_on_the_destination_with_its_state(
        cluster: Cluster, tmp_path: Path, svc: Service, mode: str) -> None:
    b = cluster.start_agent("b")
    a_node, b_node = cluster.topology["a"], cluster.topology["b"]
    with running(a_node, svc, tmp_path) as pid:
        svc.fill(a_node)
        before = svc.state(a_node)
        res, report = cluster.migrate(pid, b, "--mode", mode)
        assert res.returncode == 0, res.stderr
        assert report["result"] == "committed", report
        moved = report["destination_pid"]
        try:
            assert isinstance(moved, int)
            assert not alive(pid)  # nothing of it left on A
            assert not a_node.listening(svc.port)
            b_node.wait_listening(svc.port)
            assert svc.state(b_node) == before
        finally:
            if isinstance(moved, int):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(moved, signal.SIGKILL)
