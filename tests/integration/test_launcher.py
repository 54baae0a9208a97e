"""``ferryman migrate`` run warm by the source node's agent (cli/launcher.py, cli/launch.py):
the same migration and the same output and exit codes, for the launcher's own user in the
launcher's own namespaces only, and a killed command is a killed migration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.integration.conftest import PY, Agent, Cluster, run_cli
from tests.support.bundle import wait_for
from tests.support.workloads import alive, children


def _launcher(a: Agent) -> int:
    """The PID of ``a``'s launcher, once it listens."""
    sock = a.state_dir / "launcher.sock"
    wait_for(sock.is_socket, timeout=60, what="the launcher's socket")
    (pid,) = [c for c in children(a.proc.pid)
              if b"ferryman.cli.launcher" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return pid


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def _migrate(cluster: Cluster, a: Agent, pid: int, b: Agent, *extra: str
             ) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    report = cluster.base / f"report-launched-{pid}.json"
    res = run_cli("migrate", str(pid), "--to", b.endpoint, "--pki", str(cluster.pki),
                  "--name", "a", "--state-dir", str(a.state_dir), "--report", str(report),
                  *extra, node=a.node)
    return res, json.loads(report.read_text()) if report.exists() else {}


def test_a_migration_started_warm_moves_the_workload(cluster: Cluster) -> None:
    a = cluster.start_agent("a", launcher=True)
    b = cluster.start_agent("b", hide_dir=True)
    _launcher(a)
    w = cluster.workload(mib=64, seed="launched")
    new_pid: int | None = None
    try:
        res, report = _migrate(cluster, a, w.pid, b)
        assert res.returncode == 0, res.stderr + res.stdout
        assert report["launched"] is True, "the launcher did not run it"
        assert report["result"] == "committed"
        moved = report["destination_pid"]
        assert isinstance(moved, int)
        new_pid = moved
        assert w.status(new_pid)["bad_pages"] == 0
        assert not alive(w.pid)
        assert "COMMITTED" in res.stdout  # its summary reached our stdout
        assert "started      warm, by this node's agent" in res.stdout
        assert "FREEZING" in res.stderr  # and its progress our stderr
        assert report["steps"]["hello_facts"] < 20, "CRIU's facts were asked again"  # type: ignore[index]
        assert os.getpriority(os.PRIO_PROCESS, _launcher(a)) == 19  # it yields to the agent
    finally:
        w.kill(new_pid)


def test_errors_and_exit_codes_are_the_commands_own(cluster: Cluster) -> None:
    a = cluster.start_agent("a", launcher=True)
    b = cluster.start_agent("b")
    _launcher(a)
    argv = ("migrate", "999999", "--to", b.endpoint, "--pki", str(cluster.pki), "--name",
            "a", "--state-dir", str(a.state_dir))
    warm = run_cli(*argv, node=a.node)
    cold = subprocess.run(a.node.argv("env", "FERRYMAN_NO_LAUNCHER=1", PY, "-m", "ferryman",
                                      *argv), capture_output=True, text=True, timeout=120,
                          check=False)
    assert warm.returncode == cold.returncode != 0
    assert warm.stderr == cold.stderr
    assert warm.stderr.startswith("ferryman: error:")
    usage = run_cli("migrate", "--state-dir", str(a.state_dir), node=a.node)
    assert usage.returncode == 2
    assert "usage:" in usage.stderr


def test_killing_the_command_kills_the_migration_it_runs(cluster: Cluster) -> None:
    a = cluster.start_agent("a", launcher=True)
    b = cluster.start_agent("b", "--test-pause-after-restore", "30")
    launcher = _launcher(a)
    w = cluster.workload(mib=16, seed="launched-kill")
    proc = subprocess.Popen(a.node.argv(
        PY, "-m", "ferryman", "migrate", str(w.pid), "--to", b.endpoint, "--pki",
        str(cluster.pki), "--name", "a", "--state-dir", str(a.state_dir)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "restored migration" not in b.log():
            assert time.monotonic() < deadline, b.log()
            assert proc.poll() is None
            time.sleep(0.01)
        (running,) = children(launcher)
        assert os.getpriority(os.PRIO_PROCESS, running) == os.getpriority(
            os.PRIO_PROCESS, proc.pid), "the command's priority, not the launcher's"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not alive(running), timeout=10, what="the launched migration's end")
        # as when a controller is killed there (test_orphans.py): the source's copy runs on
        wait_for(lambda: alive(w.pid) and _state(w.pid) in "SR", timeout=10,
                 what="the workload running on A again")
        assert w.status()["bad_pages"] == 0
    finally:
        proc.kill()
        w.kill()


def test_another_user_or_namespace_runs_the_command_by_itself(cluster: Cluster) -> None:
    a = cluster.start_agent("a", launcher=True)
    _launcher(a)
    probe = ("from ferryman.cli.launch import via_launcher; "
             f"print(via_launcher(['check', '--state-dir', '{a.state_dir}']))")
    other_ns = subprocess.run(cluster.topology["b"].argv(PY, "-c", probe), capture_output=True,
                              text=True, timeout=60, check=False)
    assert other_ns.stdout.strip() == "None", other_ns.stderr
    other_user = subprocess.run(a.node.argv("setpriv", "--reuid", "65534", "--regid", "65534",
                                            "--clear-groups", PY, "-c", probe),
                                capture_output=True, text=True, timeout=60, check=False,
                                env={**os.environ, "PYTHONPATH": str(Path.cwd() / "src")})
    assert other_user.stdout.strip() == "None", other_user.stderr
    assert oct((a.state_dir / "launcher.sock").stat().st_mode & 0o777) == "0o600"


def test_a_launcher_that_does_not_answer_is_given_up_and_the_command_runs_here(
        tmp_path: Path) -> None:
    import socket

    state = tmp_path / "state"
    state.mkdir()
    hung = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hung.bind(str(state / "launcher.sock"))
    hung.listen(8)  # and never accepts: the connection waits in the backlog
    try:
        t0 = time.monotonic()
        res = run_cli("migrate", "999999", "--to", "127.0.0.1:9", "--pki",
                      str(tmp_path / "none"), "--name", "a", "--state-dir", str(state),
                      timeout=60)
        took = time.monotonic() - t0
    finally:
        hung.close()
    assert res.returncode not in (0, 1), res.stderr
    assert res.stderr.startswith("ferryman: error:"), res.stderr  # run here, in the end
    assert 10 <= took < 30, took
