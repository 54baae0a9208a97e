"""Fixtures for integration tests: namespace nodes, a cluster PKI, real agents, workloads.

Everything here is real: network namespaces, TLS agents started as processes, the real criu.
Fixtures always clean up processes and namespaces, even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.bundle import cgroup_jail_argv
from tests.support.matrix import DOC, MATRIX
from tests.support.netns import Node, Topology
from tests.support.workloads import Workload, start_workload

PY = sys.executable
AGENT_PORT = 7070
Report = dict[str, object]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: run 'make setup' (scripts/install-criu.sh)")


@pytest.fixture(scope="session")
def criu_bin() -> str:
    _require("criu")
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (CRIU, network namespaces)")
    return shutil.which("criu") or "criu"


@pytest.fixture(scope="session")
def topology(criu_bin: str) -> Iterator[Topology]:
    topo = Topology(("a", "b", "c"))
    try:
        yield topo
    finally:
        topo.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory, topology: Topology) -> Path:
    d = tmp_path_factory.mktemp("pki")
    run_cli("pki", "init", str(d))
    for n in ("a", "b", "c"):
        run_cli("pki", "issue", n, "--pki", str(d), "--ip", topology[n].ip)
    return d


@pytest.fixture(scope="session")
def rogue_pki(tmp_path_factory: pytest.TempPathFactory, topology: Topology) -> Path:
    """A second, unrelated CA whose certificates the cluster must refuse."""
    d = tmp_path_factory.mktemp("rogue-pki")
    run_cli("pki", "init", str(d))
    run_cli("pki", "issue", "a", "--pki", str(d), "--ip", topology["a"].ip)
    return d


def run_cli(*args: str, node: Node | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    argv = [PY, "-m", "ferryman", *args]
    if node is not None:
        argv = node.argv(*argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Agent:
    node: Node
    proc: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    port: int = AGENT_PORT

    @property
    def endpoint(self) -> str:
        return f"{self.node.ip}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def migration_dirs(self) -> list[Path]:
        root = self.state_dir / "migrations"
        return sorted(root.iterdir()) if root.exists() else []

    def outcomes(self) -> dict[str, str]:
        """The agent's record of how each migration ended, by id (STATE_DIR/outcomes)."""
        root = self.state_dir / "outcomes"
        return {p.name: p.read_text() for p in root.iterdir()} if root.exists() else {}


@dataclass
class Cluster:
    topology: Topology
    pki: Path
    base: Path
    hidden_dir: Path  # exists on the host (node A) but is an empty tmpfs for node B's agent
    agents: list[Agent] = field(default_factory=list)

    def start_agent(self, name: str, *extra: str, hide_dir: bool = False,
                    cgroup: str | None = None, cwd: Path | None = None,
                    env: dict[str, str] | None = None,
                    state_size: str | None = None, private: tuple[Path, ...] = (),
                    launcher: bool = False) -> Agent:
        """An agent on node ``name``; without its launcher unless asked (test_launcher.py):
        no test's commands use it, and its warm-up would only load the machine."""
        node = self.topology[name]
        state = self.base / f"state-{name}"
        state.mkdir(exist_ok=True)
        log_path = self.base / f"agent-{name}.log"
        cmd = [PY, "-m", "ferryman", "-v", "serve", "--listen", f"{node.ip}:{AGENT_PORT}",
               "--pki", str(self.pki), "--name", name, "--state-dir", str(state),
               *(() if launcher else ("--no-launcher",)), *extra]
        if hide_dir:
            # A private mount namespace in which hidden_dir is empty: files there "do not
            # exist" on this node, as on a real second machine.
            cmd = ["unshare", "-m", "--propagation", "slave", "sh", "-c",
                   f'mount -t tmpfs tmpfs "{self.hidden_dir}" && exec "$@"', "sh", *cmd]
        for d in private:  # an empty tmpfs of its own there (Podman's network state)
            cmd = ["unshare", "-m", "--propagation", "slave", "sh", "-c",
                   f'mkdir -p "{d}" && mount -t tmpfs tmpfs "{d}" && exec "$@"', "sh", *cmd]
        if state_size is not None:
            # The state directory is a tmpfs of that size in the agent's own mount namespace:
            # a small disk that a test can fill (nsenter -m -t PID).
            cmd = ["unshare", "-m", "--propagation", "slave", "sh", "-c",
                   f'mount -t tmpfs -o size={state_size} tmpfs "{state}" && exec "$@"', "sh",
                   *cmd]
        if cgroup is not None:  # cgroups of its own, as on a second machine (runc)
            cmd = [*cgroup_jail_argv(cgroup), *cmd]
        with log_path.open("ab") as logf:
            proc = node.popen(*cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                              cwd=cwd, env=None if env is None else {**os.environ, **env})
        node.wait_listening(AGENT_PORT, proc=proc)
        agent = Agent(node, proc, state, log_path)
        self.agents.append(agent)
        return agent

    def migrate(self, pid: int, dest: Agent, *extra: str, name: str = "a",
                pki: Path | None = None) -> tuple[subprocess.CompletedProcess[str], Report]:
        report = self.base / f"report-{pid}.json"
        res = run_cli("migrate", str(pid), "--to", dest.endpoint, "--pki", str(pki or self.pki),
                      "--name", name, "--state-dir", str(self.base / f"state-src-{name}"),
                      "--report", str(report), *extra, node=self.topology[name])
        data = json.loads(report.read_text()) if report.exists() else {}
        return res, data

    def moved(self, w: Workload, dest: Agent, *extra: str) -> int:
        """Migrate ``w`` to ``dest``, which must commit; its PID there, every page verified."""
        return self.moved_with_report(w, dest, *extra)[0]

    def moved_with_report(self, w: Workload, dest: Agent, *extra: str) -> tuple[int, Report]:
        """:meth:`moved`, and the migration's report."""
        res, report = self.migrate(w.pid, dest, *extra)
        assert res.returncode == 0, res.stderr
        moved = report["destination_pid"]
        assert isinstance(moved, int)
        assert w.status(moved)["bad_pages"] == 0
        return moved, report

    def kill_controller_at_restored(self, w: Workload, dest: Agent, *extra: str) -> str:
        """Start ``migrate`` (with ``extra``) and SIGKILL it (and its criu) once ``dest`` has
        restored the workload: ``dest`` must have been started with
        ``--test-pause-after-restore``. A's nftables tables at that moment."""
        argv = self.topology["a"].argv(
            PY, "-m", "ferryman", "migrate", str(w.pid), "--to", dest.endpoint, "--pki",
            str(self.pki), "--name", "a", "--state-dir", str(self.base / "src"), *extra)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while "restored migration" not in dest.log():
            assert time.monotonic() < deadline, dest.log()
            assert proc.poll() is None
            time.sleep(0.01)
        tables = self.topology["a"].run("nft", "list", "tables").stdout
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        return tables

    def workload(self, node: str = "a", **kw: object) -> Workload:
        status = self.base / f"status-{len(os.listdir(self.base))}.json"
        return start_workload(self.topology[node], status, **kw)  # type: ignore[arg-type]


@pytest.fixture
def cluster(topology: Topology, pki: Path, tmp_path: Path) -> Iterator[Cluster]:
    hidden = tmp_path / "only-on-a"
    hidden.mkdir()
    c = Cluster(topology, pki, tmp_path, hidden)
    try:
        yield c
    finally:
        for a in c.agents:
            if a.proc.poll() is None:
                a.proc.terminate()
                try:
                    a.proc.wait(10)
                except subprocess.TimeoutExpired:
                    a.proc.kill()
                    a.proc.wait()
        for n in topology.nodes.values():
            n.stop_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault matrix, when its cells ran; written to docs/ when all of them did."""
    if not MATRIX.cells:
        return
    terminalreporter.write_sep("=", "fault matrix (fault x phase x mode -> outcome)")
    terminalreporter.write_line(MATRIX.table())
    if MATRIX.recorded == MATRIX.total:
        DOC.write_text(MATRIX.markdown())
        terminalreporter.write_line(f"written to {DOC}")
