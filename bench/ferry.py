"""ferryman's side: an agent on B, ``ferryman migrate`` run inside A (as the tests do).

``ferryman migrate`` returns once the migration is complete: in post-copy that is after the
last page has arrived on B (the report's ``memory_complete_ms`` counts from B resuming the
workload until then).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.workloads import Workload

from bench.env import AGENT_PORT, Env, Outcome
from bench.proc import FERRYMAN, PY, REPO, BenchError, run_timed, stop


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " / ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(none)"


def migrate(env: Env, wl: Workload, run_dir: Path, restored: list[int], *mode_args: str
            ) -> Outcome:
    """A process tree: ``ferryman migrate PID``."""
    return run(env, run_dir, restored, [str(wl.pid)], list(mode_args))


def _state_a(env: Env, run_dir: Path) -> Path:
    """ferryman's state dir on A: its agent's (--source-agent, the agent started once, its
    launcher listening there), one for every run (--warm-state), or the run's own."""
    if env.source_agent:
        state = env.tmp / "agent-a"
        if env.a_agent is None:
            state.mkdir(exist_ok=True)
            a = env.topo["a"]
            with (env.tmp / "agent-a.log").open("ab") as logf:
                env.a_agent = subprocess.Popen(
                    a.argv(PY, "-m", "ferryman", "serve", "--listen", f"{a.ip}:{AGENT_PORT}",
                           "--pki", str(env.pki), "--name", "a", "--state-dir", str(state)),
                    cwd=REPO, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
            deadline = time.monotonic() + env.timeout
            while not (state / "launcher.sock").is_socket():
                if env.a_agent.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"A's agent and its launcher did not start: "
                                     f"{_tail(env.tmp / 'agent-a.log')}")
                time.sleep(0.05)
        return state
    return env.tmp / "state-a" if env.warm_state else run_dir / "state-a"


def forget_links(env: Env) -> None:
    """The link's rate ferryman remembers in A's shared state dir (--source-agent,
    --warm-state; agent/linkmemo.py) is wrong once the bench reshapes the link: an operator
    who changes a link runs ``ferryman check`` again, the bench forgets it."""
    for state in (env.tmp / "agent-a", env.tmp / "state-a"):
        (state / "links.json").unlink(missing_ok=True)


def movable_args(env: Env) -> list[str]:
    """B's agent may take up the service address (``--move-address`` in TCP runs)."""
    if not env.service:
        return []
    net = ipaddress.IPv4Network(env.service, strict=False)
    return ["--movable-addresses", f"{net}@{env.dev}"]


def run(env: Env, run_dir: Path, restored: list[int], target: list[str], mode_args: list[str],
        *, on_b: Callable[..., list[str]] | None = None, agent_args: tuple[str, ...] = (),
        on_a: Callable[..., list[str]] | None = None) -> Outcome:
    """``ferryman migrate TARGET… MODE_ARGS…`` in A (its command line made by ``on_a``,
    default A's network namespace), to an agent started in B for this run (its command line
    made by ``on_b``, default B's network namespace, with ``agent_args``)."""
    b = env.topo["b"]
    state_b = run_dir / "agent-b"
    state_b.mkdir()
    log_path = run_dir / "agent-b.log"
    argv = (on_b or b.argv)(PY, "-m", "ferryman", "serve", "--listen", f"{b.ip}:{AGENT_PORT}",
                            "--pki", str(env.pki), "--name", "b", "--state-dir", str(state_b),
                            "--no-launcher",  # B runs no command: its warm-up would only load
                            *movable_args(env), *env.serve_args, *agent_args)
    with log_path.open("ab") as logf:
        agent = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=logf,
                                 stderr=logf)
    try:
        b.wait_listening(AGENT_PORT, timeout=min(env.timeout, 60), proc=agent)
        report_path = run_dir / "report.json"
        wall0 = time.time()
        res = run_timed((on_a or env.topo["a"].argv)(
            FERRYMAN, "migrate", *target, "--to", f"{b.ip}:{AGENT_PORT}", "--pki",
            str(env.pki), "--name", "a", "--state-dir", str(_state_a(env, run_dir)), "--report",
            str(report_path), *mode_args), env.timeout)
        report: dict[str, Any] = (json.loads(report_path.read_text())
                                  if report_path.exists() else {})
        pid = report.get("destination_pid")
        if isinstance(pid, int):
            restored.append(pid)
        try:
            res.check("ferryman migrate")
        except BenchError as exc:
            raise BenchError(f"{exc} | agent log: {_tail(log_path)}") from exc
        if report.get("result") != "committed" or not isinstance(pid, int):
            raise BenchError(f"ferryman report says {report.get('result')!r}, "
                             f"destination_pid {pid!r}")
        criu = report.get("criu") or {}
        complete = report.get("memory_complete_ms")
        return Outcome(
            total_ms=res.ms,
            bytes_moved=report.get("bytes_transferred"),
            started_wall=wall0,
            # post-copy: destination resumed the workload → every page arrived (B's clock)
            memory_complete_ms=float(complete) if isinstance(complete, int | float) else None,
            details={
                "report_downtime_ms": report.get("downtime_ms"),
                "report_total_ms": report.get("total_ms"),
                "lazy_pages": report.get("lazy_pages"),
                "page_bytes": report.get("page_bytes"),
                "image_bytes": report.get("image_bytes"),
                "criu_dump": criu.get("dump", {}),
                "criu_restore": criu.get("restore", {}),
                "phases": report.get("phases", []),
                "steps": report.get("steps") or {},  # before the freeze, ms per step
                "sync": report.get("sync") or {},  # containers: rsync times and bytes
                "compression": report.get("compression") or {},  # --compress: chosen, ratio
            })
    finally:
        stop(agent)
