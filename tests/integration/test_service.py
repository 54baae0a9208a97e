"""The agent as a service: ``ferryman serve --config FILE`` for real, systemd's readiness
protocol without systemd (this test binds the NOTIFY_SOCKET datagram socket itself), and the
shipped unit. The same unit under a real systemd: tests/vm/test_vm_service.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.pki import load_node
from ferryman.pki.tls import client_context, peer_name
from tests.integration.conftest import AGENT_PORT, PY, Agent, Cluster, run_cli

EXIT_USAGE = 2


def write_config(path: Path, **keys: object) -> Path:
    lines = [f"{k.replace('_', '-')} = {json.dumps(v)}" for k, v in keys.items()]
    path.write_text("# written by tests/integration/test_service.py\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    try:
        yield s, path
    finally:
        s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def handshake(ctx: ssl.SSLContext, port: int) -> str:
    """One TLS 1.3 handshake with the agent on 127.0.0.1:``port``; the agent's name."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return peer_name(tls)


def receive(s: socket.socket, timeout: float) -> dict[str, str]:
    s.settimeout(timeout)
    data = s.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_is_sent_once_the_tls_listener_accepts_and_stopping_on_sigterm(
        cluster: Cluster, tmp_path: Path, notify_socket: tuple[socket.socket, Path]) -> None:
    """The agent runs on the host's loopback (the socket is the test's own), configured only by
    its file; its certificate names 127.0.0.1 as every node's does."""
    sock, path = notify_socket
    port = free_port()
    config = write_config(tmp_path / "agent.toml", listen=f"127.0.0.1:{port}",
                          pki=str(cluster.pki), name="b", state_dir=str(tmp_path / "state"))
    ctx = client_context(load_node(cluster.pki, "a"))
    log = (tmp_path / "agent.log").open("wb")
    t0 = time.monotonic()
    proc = subprocess.Popen([PY, "-m", "ferryman", "serve", "--config", str(config)],
                            env={**os.environ, "NOTIFY_SOCKET": str(path)},
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        ready = receive(sock, timeout=60)
        ready_s = time.monotonic() - t0
        # no retry: at READY=1 the listener must already complete a TLS handshake
        assert handshake(ctx, port) == "b"
        assert ready == {"READY": "1", "STATUS": f"listening on 127.0.0.1:{port}"}, ready
        assert proc.poll() is None
        print(f"READY=1 {ready_s * 1000:.0f} ms after start")
        proc.send_signal(signal.SIGTERM)
        stopping = receive(sock, timeout=30)
        assert stopping.get("STOPPING") == "1", stopping
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    text = (tmp_path / "agent.log").read_text()
    assert f"agent b listening on 127.0.0.1:{port}" in text, text
    assert "agent b stopping" in text, text


def test_an_agent_configured_by_its_file_checks_and_moves_a_workload(
        cluster: Cluster, tmp_path: Path) -> None:
    b = cluster.topology["b"]
    state = tmp_path / "state-b"
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    shutil.copytree(cluster.pki, conf_dir / "pki")  # relative to the file: "pki"
    config = write_config(conf_dir / "agent.toml", listen=f"{b.ip}:{AGENT_PORT}", pki="pki",
                          name="b", state_dir=str(state), max_migrations=1)
    log_path = tmp_path / "agent-b.log"
    with log_path.open("ab") as logf:
        proc = b.popen(PY, "-m", "ferryman", "serve", "--config", str(config),
                       stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    b.wait_listening(AGENT_PORT, proc=proc)
    agent = Agent(b, proc, state, log_path)
    cluster.agents.append(agent)  # stopped by the fixture
    w = cluster.workload(mib=32, seed="service")
    moved: int | None = None
    try:
        res = run_cli("check", str(w.pid), "--to", agent.endpoint, "--pki", str(cluster.pki),
                      "--name", "a", "--state-dir", str(tmp_path / "state-src-a"), "--json",
                      node=cluster.topology["a"])
        assert res.returncode == 0, res.stderr
        verdict = json.loads(res.stdout)
        assert verdict["can_move"] is True, verdict
        assert "cold" in verdict["allowed_modes"], verdict
        moved = cluster.moved(w, agent, "--mode", "cold")
        assert moved > 0
    finally:
        w.kill(moved)  # the moved copy on B too (it outlived the test before)
    assert f"agent b listening on {b.ip}:{AGENT_PORT}" in agent.log()
    assert f"state {state}" in agent.log()  # the file's state-dir, not the default


def test_flags_override_the_file_for_real(cluster: Cluster, tmp_path: Path) -> None:
    """The file names a port and a state directory; the flags others: the agent takes those."""
    port = free_port()
    config = write_config(tmp_path / "agent.toml", listen="127.0.0.1:1", pki=str(cluster.pki),
                          name="b", state_dir=str(tmp_path / "file-state"))
    log = (tmp_path / "agent.log").open("wb")
    proc = subprocess.Popen([PY, "-m", "ferryman", "serve", "--config", str(config),
                             "--listen", f"127.0.0.1:{port}",
                             "--state-dir", str(tmp_path / "flag-state")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert handshake(client_context(load_node(cluster.pki, "a")), port) == "b"
                break
            except ConnectionRefusedError:
                assert proc.poll() is None, (tmp_path / "agent.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert (tmp_path / "flag-state").is_dir()
        assert not (tmp_path / "file-state").exists()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.mark.parametrize(("text", "expected"), [
    ('listen = "127.0.0.1:7070"\nstatedir = "/x"\n', "unknown key 'statedir'"),
    ('max-migrations = "four"\n', "bad value for 'max-migrations': \"four\""),
])
def test_a_bad_config_file_is_one_line_naming_key_and_file(
        tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(text)
    res = run_cli("serve", "--config", str(config))
    assert res.returncode == EXIT_USAGE
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"ferryman: error: {config}: {expected}"), lines


def test_the_installed_unit_is_valid_for_systemd(tmp_path: Path) -> None:
    unit = tmp_path / "ferryman.service"
    res = run_cli("serve", "--install-unit", str(unit), "--config", "/etc/ferryman/agent.toml")
    assert res.returncode == 0, res.stderr
    text = unit.read_text()
    assert f"ExecStart={PY} -m ferryman serve --config /etc/ferryman/agent.toml\n" in text
    for line in ("Type=notify", "Restart=on-failure", "RestartPreventExitStatus=2",
                 "StateDirectory=ferryman", "KillMode=process"):
        assert f"\n{line}\n" in text, line
    for option in ("ProtectSystem", "PrivateTmp", "NoNewPrivileges", "SystemCallFilter"):
        assert not any(ln.startswith(f"{option}=") for ln in text.splitlines()), option
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is unchecked")
    res2 = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, check=False, timeout=60)
    problems = [ln for ln in res2.stderr.splitlines() if str(unit) in ln]
    assert not problems, res2.stderr


def _second_agent(cluster: Cluster, state: Path, port: int) -> subprocess.CompletedProcess[str]:
    ip = cluster.topology["b"].ip
    return run_cli("serve", "--listen", f"{ip}:{port}", "--pki", str(cluster.pki), "--name",
                   "b", "--state-dir", str(state), "--no-launcher",
                   node=cluster.topology["b"], timeout=60)


def _one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("ferryman: error:")]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert "internal error" not in res.stderr
    return lines[0]


def test_a_second_agent_on_the_same_state_dir_stops_before_touching_it(
        cluster: Cluster) -> None:
    """Started by mistake beside the first (another port), it must not sweep the first
    one's migration in progress as 'interrupted'."""
    b = cluster.start_agent("b")
    busy = b.state_dir / "migrations" / "20261205-000000-inflight"
    busy.mkdir(parents=True)
    (busy / "pages-1.img").write_bytes(b"x" * 4096)
    res = _second_agent(cluster, b.state_dir, AGENT_PORT + 1)
    assert res.returncode == 1, res.stderr
    assert "another ferryman agent runs with the state directory" in _one_error_line(res)
    assert (busy / "pages-1.img").exists()
    assert b.proc.poll() is None


def test_an_agent_on_a_taken_port_says_so_in_one_line(cluster: Cluster) -> None:
    cluster.start_agent("b")
    res = _second_agent(cluster, cluster.base / "state-other", AGENT_PORT)
    assert res.returncode == 1, res.stderr
    line = _one_error_line(res)
    assert f"cannot listen on {cluster.topology['b'].ip}:{AGENT_PORT}" in line
    assert "Address already in use" in line


def test_a_starting_agent_leaves_a_running_migrate_s_directory_alone(cluster: Cluster) -> None:
    """``ferryman migrate`` on a node holds its migration directory's lock; an agent that
    starts meanwhile on the same state directory removes only what nobody holds."""
    state = cluster.base / "state-b"
    running = state / "migrations" / "20261205-000000-running"
    dead = state / "migrations" / "20261205-000000-dead"
    for d in (running, dead):
        d.mkdir(parents=True)
        (d / "busy.lock").touch()
    holder = subprocess.Popen(["flock", str(running / "busy.lock"), "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while "FLOCK" not in Path("/proc/locks").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        b = cluster.start_agent("b")
        assert running.is_dir()
        assert not dead.exists()
        assert b.proc.poll() is None
    finally:
        holder.kill()
        holder.wait()
