"""An agent under abuse by a peer that holds a cluster certificate, or none at all.

Each test drives a real agent (a namespace node, real TLS) with a hand-driven peer
(tests/support/peer.py) doing what a real controller never would, and checks that the agent
stays within bounds and keeps serving. The outside review's findings (issue 16) each have one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import time
import uuid
from collections.abc import Callable

import pytest

from ferryman import testhooks, wire
from ferryman.agent.limits import Limits
from ferryman.agent.statelock import AGENT_LOCK
from ferryman.host import netinfo
from ferryman.host.inspect import FileRef, FileStat, WorkloadFacts
from ferryman.migration.query import encode_query
from tests.integration.conftest import AGENT_PORT, PY, Agent, Cluster
from tests.support.faults import descendants
from tests.support.peer import (
    Peer,
    client_context,
    connect,
    netns_socket,
    open_fds,
    raw_frame,
)


def peer(cluster: Cluster, dest: Agent, name: str = "a", timeout: float = 20.0) -> Peer:
    """A session from node a's namespace to ``dest``, with certificate ``name``."""
    return Peer(cluster.topology["a"].name, dest.node.ip, AGENT_PORT, cluster.pki, name,
                timeout=timeout)


def agent_cpuinfo(cluster: Cluster, dest: Agent) -> bytes:
    """The agent's own CPU description: a Hello carrying it passes the Plan's CPU check."""
    with peer(cluster, dest) as p:
        theirs = p.hello()
        p.send(wire.Abort("probe"))
        p.recv()
    return theirs.cpuinfo


def planned(cluster: Cluster, dest: Agent, **plan: object) -> tuple[Peer, wire.Message | None]:
    """A session that sent Hello and a cold Plan; its answer to the Plan."""
    cpu = agent_cpuinfo(cluster, dest)
    p = peer(cluster, dest)
    p.hello(cpuinfo=cpu)
    fields: dict[str, object] = {"migration_id": f"abuse-{uuid.uuid4().hex[:8]}",
                                 "mode": "cold", "pid": 4242, "lazy": False, **plan}
    p.send(wire.Plan(**fields))  # type: ignore[arg-type]
    return p, p.recv()


def wait_for(what: Callable[[], bool], timeout: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def still_serves(cluster: Cluster, dest: Agent) -> bool:
    """A well-behaved session still gets the agent's Hello."""
    try:
        with peer(cluster, dest, timeout=10) as p:
            p.hello()
            p.send(wire.Abort("probe"))
            return isinstance(p.recv(), wire.Aborted)
    except OSError:
        return False


@pytest.mark.timeout(120)
def test_session_lost_mid_file_leaves_no_fd_open(cluster: Cluster) -> None:
    """Finding 2: files half received when the peer goes away are closed (and their disk freed)."""
    b = cluster.start_agent("b")
    p, ready = planned(cluster, b)
    assert isinstance(ready, wire.Ready), ready
    workdir = b.state_dir / "migrations"
    for i in range(20):
        p.send(wire.FileChunk(name=f"part-{i}.img", offset=0, data=b"x" * 65536))
    assert wait_for(lambda: sum(1 for _ in workdir.rglob("part-*.img")) == 20)
    p.close()
    assert wait_for(lambda: not any(workdir.iterdir())), "the migration directory stayed"
    leaked = [f for f in open_fds(b.proc.pid) if str(b.state_dir) in f
              and f != str(b.state_dir / AGENT_LOCK)]  # held for the agent's life
    assert leaked == [], f"the agent still holds {len(leaked)} image files open: {leaked[:3]}"
    assert still_serves(cluster, b)


@pytest.mark.timeout(60)
def test_peer_text_cannot_forge_an_agent_log_line(cluster: Cluster) -> None:
    """Finding 12: an Abort reason with a newline and escapes stays inside its own log line."""
    b = cluster.start_agent("b")
    forged = "2026-12-04 00:00:00,000 ferryman.agent.destination INFO migration forged committed"
    with peer(cluster, b) as p:
        p.hello()
        p.send(wire.Abort(f"ok\n{forged}\x1b[2J"))
        assert isinstance(p.recv(), wire.Aborted)
    assert wait_for(lambda: "forged committed" in b.log())
    lines = b.log().splitlines()
    assert not any(line.startswith(forged) for line in lines)
    assert not any("\x1b" in line for line in lines)
    assert any(line.endswith(f"before a plan: ok\\n{forged}\\x1b[2J") for line in lines)


@pytest.mark.timeout(60)
def test_a_peer_cannot_speak_as_another_node(cluster: Cluster) -> None:
    """Finding 11: certificate c saying it is node a gets an Error, not the agent's Hello."""
    b = cluster.start_agent("b")
    with peer(cluster, b, name="c") as p:
        p.send(wire.Hello(protocol_version=1, node="a", criu_version="4.2.1", features={},
                          cpuinfo=b"", free_memory=1 << 30, free_disk=1 << 30))
        answer = p.recv()
        assert isinstance(answer, wire.Error), answer
        assert answer.code == "identity"
        assert "'c'" in answer.message
        assert p.recv(5) is None  # and the session is over
    assert still_serves(cluster, b)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("agent_args", "spec"), [
    ((), "10.77.0.100/24@eth0"),  # the operator made nothing movable
    (("--movable-addresses", "10.77.0.0/24@eth0"), "192.0.2.77/1@lo"),  # the review's
    (("--movable-addresses", "10.77.0.0/24@eth0"), "10.77.0.100/1@eth0"),
    (("--movable-addresses", "10.77.0.0/24@eth0"), "10.77.0.100/24@lo"),
])
def test_plan_may_move_only_what_the_operator_made_movable(
        cluster: Cluster, agent_args: tuple[str, ...], spec: str) -> None:
    """Finding 6: a move_address outside ``serve --movable-addresses`` is Refused, and
    nothing reaches the node's addresses or routes."""
    b = cluster.start_agent("b", *agent_args)
    before = b.node.run("ip", "-4", "route", "show", "table", "all").stdout
    p, answer = planned(cluster, b, move_address=spec)
    p.close()
    assert isinstance(answer, wire.Refused), answer
    assert answer.code == "address"
    assert "--movable-addresses" in answer.message
    assert b.node.run("ip", "-4", "route", "show", "table", "all").stdout == before
    assert not (b.state_dir / "migrations").exists() or not any(b.migration_dirs())


def _idle_connections(cluster: Cluster, dest: Agent, count: int) -> list[socket.socket]:
    """``count`` plain TCP connections to ``dest`` that never say anything."""
    out = []
    for _ in range(count):
        s = netns_socket(cluster.topology["a"].name)
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect((dest.node.ip, AGENT_PORT))
        out.append(s)
    return out


def _limit_fds(agent: Agent, limit: int) -> None:
    subprocess.run(["prlimit", f"--pid={agent.proc.pid}", f"--nofile={limit}:{limit}"],
                   check=True)


def _open(p: Peer, wait: float = 0.2) -> bool:
    """The agent has not closed ``p``'s session within ``wait`` seconds."""
    p.sock.settimeout(wait)
    try:
        return p.sock.recv(1) != b""
    except TimeoutError:
        return True
    except (OSError, ssl.SSLError):
        return False


@pytest.mark.timeout(120)
def test_idle_unauthenticated_connections_cannot_exhaust_the_agent(cluster: Cluster) -> None:
    """Finding 3: 300 connections that never start TLS leave a real controller served at
    once, and the agent's descriptors bounded by its handshake cap."""
    b = cluster.start_agent("b")
    assert still_serves(cluster, b)
    base = len(open_fds(b.proc.pid))
    _limit_fds(b, 128)
    idle = _idle_connections(cluster, b, 300)
    try:
        time.sleep(2)
        t0 = time.monotonic()
        assert still_serves(cluster, b)
        assert time.monotonic() - t0 < 5
        held = len(open_fds(b.proc.pid))
        assert held <= base + Limits().handshakes + 2, f"{held} fds, {base} at start"
    finally:
        for s in idle:
            s.close()
    assert still_serves(cluster, b)


@pytest.mark.timeout(120)
def test_out_of_descriptors_the_agent_pauses_quietly_and_recovers(cluster: Cluster) -> None:
    """Finding 3: at its fd limit the agent neither spins nor floods its log, and serves
    again once descriptors come back."""
    b = cluster.start_agent("b")
    assert still_serves(cluster, b)
    _limit_fds(b, len(open_fds(b.proc.pid)) + 8)
    log_before = len(b.log())
    idle = _idle_connections(cluster, b, 20)  # 8 take the last fds, the rest queue
    try:
        time.sleep(4)  # within their handshake timeout: the agent stays out of fds
        grown = b.log()[log_before:]
        assert len(grown.splitlines()) <= 3, grown[-2000:]
        assert "Traceback" not in grown
        assert "cannot accept connections" in grown
    finally:
        for s in idle:
            s.close()
    assert wait_for(lambda: still_serves(cluster, b), timeout=30)


@pytest.mark.timeout(120)
def test_a_trickling_peer_is_timed_out_per_message(cluster: Cluster) -> None:
    """Finding 4: one byte of a Hello every 5 s does not renew the agent's 30 s Hello
    timeout (it was a timeout per read, so such a session lived forever)."""
    b = cluster.start_agent("b")
    hello = raw_frame({"type": "Hello"})
    with peer(cluster, b) as p:
        t0 = time.monotonic()
        closed_after = None
        for byte in hello:
            try:
                p.raw(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - t0
                break
            if not _open(p, 5):  # waits 5 s for the agent to end the session
                closed_after = time.monotonic() - t0
                break
            if time.monotonic() - t0 > 45:
                break
    assert closed_after is not None, "the agent still held the trickling session after 45 s"
    assert 25 < closed_after < 40


@pytest.mark.timeout(120)
def test_partial_frames_share_one_buffer_budget(cluster: Cluster) -> None:
    """Finding 4: sessions each holding an unfinished 8 MiB frame are ended once all of them
    together would pass the agent's buffer budget (it was 8 MiB per session, no total)."""
    b = cluster.start_agent("b")
    size = (8 << 20) - 200
    partial = raw_frame({"type": "LinkTest", "payload": size}, bytes(size))[:-1]
    budget = Limits().buffered_bytes
    count = budget // size + 3
    peers = []
    try:
        for _ in range(count):
            p = peer(cluster, b)
            p.hello()
            with contextlib.suppress(OSError):
                p.raw(partial)
            peers.append(p)
        time.sleep(2)
        alive = [p for p in peers if _open(p)]
        assert len(alive) * size <= budget, f"{len(alive)} of {count} sessions kept"
        assert still_serves(cluster, b)
    finally:
        for p in peers:
            p.close()


@pytest.mark.timeout(120)
def test_concurrent_migrations_are_capped(cluster: Cluster) -> None:
    """Finding 4: a Plan past ``serve --max-migrations`` is Refused as busy before any page
    server starts; a slot comes back when a migration ends."""
    b = cluster.start_agent("b", "--max-migrations", "2")
    first, a1 = planned(cluster, b)
    second, a2 = planned(cluster, b)
    try:
        assert isinstance(a1, wire.Ready), a1
        assert isinstance(a2, wire.Ready), a2
        third, a3 = planned(cluster, b)
        third.close()
        assert isinstance(a3, wire.Refused), a3
        assert a3.code == "busy"
        assert "--max-migrations" in a3.message
        first.send(wire.Abort("done"))
        assert isinstance(first.recv(), wire.Aborted)
        first.close()
        fourth, a4 = planned(cluster, b)
        fourth.close()
        assert isinstance(a4, wire.Ready), a4
    finally:
        first.close()
        second.close()



def _page_servers(agent: Agent) -> int:
    out = subprocess.run(["ps", "-o", "args=", "--ppid", str(agent.proc.pid)],
                         capture_output=True, text=True, check=False).stdout
    return sum("page-server" in line for line in out.splitlines())


PS_IOV_CLOSE = struct.pack("<I4xQQQ", 0x1023, 0, 0, 0)  # criu/page-xfer.c: flush and close


@pytest.mark.timeout(120)
def test_only_the_source_reaches_a_migrations_page_server(cluster: Cluster) -> None:
    """Finding 5: a plain connect+close to the page-server port from anywhere but the
    source is reset and the page server lives on (CRIU's served the first connection it got
    and exited when that one failed); the source's CRIU then gets it."""
    b = cluster.start_agent("b")
    p, ready = planned(cluster, b)
    try:
        assert isinstance(ready, wire.Ready), ready
        port = ready.page_server_port
        assert _page_servers(b) == 1
        for _ in range(3):
            with pytest.raises(ConnectionRefusedError):
                connect(cluster.topology["c"].name, b.node.ip, port).close()
        time.sleep(0.5)
        assert _page_servers(b) == 1, "a stranger's connection ended the page server"
        raw = connect(cluster.topology["a"].name, b.node.ip, port)  # the source's address
        with client_context(cluster.pki, "a").wrap_socket(raw) as s:
            s.sendall(PS_IOV_CLOSE)
            assert len(s.recv(4)) == 4  # CRIU's page server answered the source
        assert wait_for(lambda: _page_servers(b) == 0)
        p.send(wire.Abort("done"))
        assert isinstance(p.recv(), wire.Aborted)
    finally:
        p.close()
    tables = b.node.run("nft", "list", "tables").stdout
    assert "ferryman-ps-" not in tables, "the page server's guard outlived the migration"


def _criu_listening(node_name: str) -> list[int]:
    """The TCP ports a criu process listens on in network namespace ``node_name``."""
    out = subprocess.run(["nsenter", f"--net=/var/run/netns/{node_name}", "--", "ss", "-Hltnp"],
                         capture_output=True, text=True, check=False).stdout
    return [int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()
            if '(("criu"' in line]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("relay", [True, False], ids=["relay", "criu-page-server"])
def test_only_the_destination_reaches_the_lazy_pages(cluster: Cluster,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     relay: bool) -> None:
    """A post-copy's lazy pages are reachable by the destination alone.

    Through ferryman's page relay (a process tree, the default): the source's lazy dump
    listens on no port at all; its pages leave through the TLS connection the source opens to
    the destination's relay port, which the destination guards for the source's address.

    Where the source's CRIU lacks the relay patch (hidden here), the lazy dump is a page
    server, and CRIU's serves the first connection it accepts: a stranger's plain
    connect+close there, before the destination's, ended the dump and the migration with it.
    The source admits only the address the destination's Ready names (its route's source
    toward the source).

    Held at AWAIT_RESTORE, node C is refused; then the migration commits with every page,
    and the guards go with it."""
    if not relay:
        monkeypatch.setenv(testhooks.HIDE_ENV, "lazy_relay")
    a, b_node, c = cluster.topology["a"], cluster.topology["b"], cluster.topology["c"]
    assert netinfo.route_source("127.0.0.1") == "127.0.0.1"  # what B's agent asks its kernel
    b = cluster.start_agent("b")
    w = cluster.workload(mib=32, seed="lazy-guard")
    flag = cluster.base / "paused-at-await-restore"
    report = cluster.base / "lazy-guard.json"
    argv = a.argv(PY, "-m", "ferryman", "migrate", str(w.pid), "--to", b.endpoint, "--pki",
                  str(cluster.pki), "--name", "a", "--state-dir", str(cluster.base / "src"),
                  "--mode", "postcopy", "--report", str(report))
    proc = subprocess.Popen(argv, env={**os.environ, testhooks.ENV: f"AWAIT_RESTORE:{flag}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(flag.exists, 60), "the migration never reached AWAIT_RESTORE"
        ports = _criu_listening(a.name)
        if relay:
            assert ports == []  # the lazy dump serves the relay's socket pair
            guards = re.findall(rf"ferryman-ps-{AGENT_PORT}-(\d+)",
                                b_node.run("nft", "list", "tables").stdout)
            assert len(guards) == 1, guards  # the relay's port on B, guarded
            host, port = b.endpoint.rsplit(":", 1)[0], int(guards[0])
        else:
            assert len(ports) == 1, ports
            assert "ferryman-ps-0-" in a.run("nft", "list", "tables").stdout
            host, port = a.ip, ports[0]
        for _ in range(3):
            with pytest.raises(ConnectionRefusedError):
                connect(c.name, host, port).close()
        flag.unlink()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        done = json.loads(report.read_text())
        assert done["compression"]["relay"] is relay
        assert w.status(done["destination_pid"])["bad_pages"] == 0
    finally:
        flag.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if report.exists():  # the copy B restored is no child of ours
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(json.loads(report.read_text())["destination_pid"], 9)
    assert "ferryman-ps-" not in a.run("nft", "list", "tables").stdout, "the guard outlived it"
    assert wait_for(lambda: f"ferryman-ps-{AGENT_PORT}-" not in
                    b_node.run("nft", "list", "tables").stdout, 10), "B's guard outlived it"


@pytest.mark.timeout(120)
def test_pre_flight_is_no_oracle_for_private_files(cluster: Cluster) -> None:
    """Finding 10: a CheckRequest naming private paths learns neither their sizes nor whether
    they exist; files any local user may read are still compared."""
    b = cluster.start_agent("b")
    private = ["/etc/shadow", "/root/.bash_history", "/root/no-such-file",
               str(cluster.pki / "ca.key")]
    public = ["/etc/passwd", "/etc/no-such-file"]
    files = tuple(FileRef(p, "fd", FileStat("f", 1, 0)) for p in private + public)
    w = WorkloadFacts(pid=1, comm="x", processes=1, ids=(1,), own_pid_ns=True,
                      own_net_ns=True, own_time_ns=False, rss_bytes=0, files=files,
                      sockets=())
    with peer(cluster, b) as p:
        p.hello()
        p.send(wire.CheckRequest(encode_query(w, (), budget=60000)))
        report = p.recv()
        p.send(wire.Abort("bye"))
        p.recv()
    assert isinstance(report, wire.CheckReport), report
    rows = {r["check"]: r for r in json.loads(report.result)["rows"]}
    text = json.dumps(rows)
    for path in private:
        assert path not in text, f"the agent answered about {path}: {text}"
    assert "4 files not compared" in rows["files.withheld"]["detail"]
    assert rows["files.withheld"]["modes"] == []  # a note: blocks no migration
    assert "/etc/passwd (fd) has" in rows["files"]["detail"]  # public: compared as before
    assert "/etc/no-such-file (fd) missing" in rows["files"]["detail"]


@pytest.mark.timeout(120)
def test_sessions_past_the_cap_are_told_busy(cluster: Cluster) -> None:
    """Finding 3: authenticated sessions are capped too; one past the cap gets Error 'busy'
    (not a silent close, which a controller would take for a refused certificate)."""
    b = cluster.start_agent("b")
    limit = Limits().sessions
    held = []
    try:
        for _ in range(limit):
            p = peer(cluster, b)
            p.hello()
            held.append(p)
        with peer(cluster, b) as extra:
            answer = extra.recv()
            assert isinstance(answer, wire.Error), answer
            assert answer.code == "busy"
        held.pop().close()
        assert wait_for(lambda: still_serves(cluster, b), timeout=10)
    finally:
        for p in held:
            p.close()


@pytest.mark.timeout(60)
def test_a_cpu_this_node_cannot_run_refuses_the_plan_and_leaves_nothing(cluster: Cluster) -> None:
    """CRIU's CPU check runs while the page server starts: its refusal stops both, and the
    migration's directory, page server and port guard are gone."""
    b = cluster.start_agent("b")
    with peer(cluster, b) as p:
        p.hello(cpuinfo=b"\x08\x01not a cpuinfo image")
        p.send(wire.Plan(migration_id=f"abuse-{uuid.uuid4().hex[:8]}", mode="cold", pid=4242,
                         lazy=False))
        answer = p.recv()
        assert isinstance(answer, wire.Refused), answer
        assert answer.code == "cpu", answer
        assert "CPU is not compatible" in answer.message, answer
    assert wait_for(lambda: not any((b.state_dir / "migrations").iterdir()))
    assert wait_for(lambda: descendants(b.proc.pid) == []), "the page server outlived it"
    tables = b.node.run("nft", "list", "tables").stdout
    assert "ferryman-ps-" not in tables, "the page server's guard outlived the refusal"
    assert still_serves(cluster, b)
