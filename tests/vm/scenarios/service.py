#!/usr/bin/env python3
"""Guest side of tests/vm/test_vm_service.py: the agent as a systemd service, in two guests
booted with systemd as PID 1 (``run-vm.sh -2 -S``), the repository shared read-only.

* vm2 sets the agent up as README's "Running the agent" says: a ``ferryman`` command, the
  node's PKI files in /etc/ferryman/pki, /etc/ferryman/agent.toml, ``ferryman serve
  --install-unit``, ``systemctl daemon-reload``, ``systemctl start ferryman``. The moment
  ``systemctl start`` returns (a Type=notify unit: after READY=1) it completes a TLS handshake
  with the agent, no retry. Then it serves vm1's requests on its control port (as
  ferryman_migrations.py's vm2 does). When vm1 is done it SIGKILLs the agent (systemd must
  restart it: Restart=on-failure), stops it, and reports ``@@ service {...}``: unit
  properties, timings, the state directory's mode, the journal's lines.
* vm1 waits for vm2's agent, runs ``ferryman check`` and a cold ``ferryman migrate`` of the
  test workload to it, has vm2 verify every page, and reports ``@@ service-migration {...}``.

Environment: PKI (a directory with ca.pem and vm1/vm2 credentials), STEP_TMO.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ferryman_migrations as fm  # tests/vm/scenarios: the shared guest helpers

REPO = fm.REPO
COMMAND = Path("/usr/local/bin/ferryman")
ETC = Path("/etc/ferryman")
UNIT = Path("/etc/systemd/system/ferryman.service")
PROPS = ("Type", "ActiveState", "SubState", "MainPID", "StatusText", "Result", "NRestarts",
         "ExecMainStatus", "KillMode", "StateDirectory")
WORKLOAD_MIB = 16


def sh(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)


def unit_props() -> dict[str, str]:
    out = sh("systemctl", "show", "ferryman", *(f"--property={p}" for p in PROPS)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def handshake() -> str:
    """One TLS handshake with the agent, no retry: its certificate's name, or the error."""
    sys.path.insert(0, str(REPO / "src"))
    from ferryman.pki import load_node
    from ferryman.pki.tls import client_context, peer_name

    ip = os.environ["VM_IP"].split("/")[0]
    ctx = client_context(load_node(ETC / "pki", "vm2"))
    try:
        with socket.create_connection((ip, fm.AGENT_PORT), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname=ip) as tls:
            return peer_name(tls)
    except OSError as exc:
        return f"error: {exc!r}"


def journal() -> list[str]:
    return sh("journalctl", "-u", "ferryman", "-o", "cat", "--no-pager").stdout.splitlines()


def install() -> dict[str, object]:
    """README's steps for a node that has ferryman and CRIU installed."""
    COMMAND.write_text("#!/usr/bin/python3\n# ferryman from the shared repository\nimport sys\n"
                       f"sys.path.insert(0, {str(REPO / 'src')!r})\n"
                       "from ferryman.cli.main import main\nsys.exit(main())\n")
    COMMAND.chmod(0o755)
    (ETC / "pki").mkdir(parents=True, exist_ok=True)
    for f in ("ca.pem", "vm2.pem", "vm2.key"):
        shutil.copy(Path(fm.PKI) / f, ETC / "pki" / f)
    (ETC / "pki" / "vm2.key").chmod(0o600)
    ip = os.environ["VM_IP"].split("/")[0]
    (ETC / "agent.toml").write_text(f'listen = "{ip}:{fm.AGENT_PORT}"\npki = "pki"\n'
                                    'name = "vm2"\nstate-dir = "/var/lib/ferryman"\n')
    inst = sh(str(COMMAND), "serve", "--install-unit")
    return {"rc": inst.returncode, "out": inst.stdout.splitlines() + inst.stderr.splitlines(),
            "exec_start": [ln for ln in UNIT.read_text().splitlines()
                           if ln.startswith("ExecStart=")] if UNIT.exists() else []}


def wait_restarted(old_pid: str, timeout: float = 90) -> dict[str, object]:
    end = time.monotonic() + timeout
    t0 = time.monotonic()
    while time.monotonic() < end:
        p = unit_props()
        if p.get("ActiveState") == "active" and p.get("MainPID") not in (old_pid, "0"):
            return {"props": p, "seconds": time.monotonic() - t0, "handshake": handshake()}
        time.sleep(0.2)
    return {"props": unit_props(), "seconds": None, "handshake": None}


def destination() -> None:
    report: dict[str, object] = {"install": install()}
    sh("systemctl", "daemon-reload")
    t0 = time.monotonic()
    start = sh("systemctl", "start", "ferryman", timeout=300)
    report["start"] = {"rc": start.returncode, "seconds": time.monotonic() - t0,
                       "stderr": start.stderr.splitlines(), "handshake": handshake()}
    report["props"] = unit_props()
    state = Path("/var/lib/ferryman")
    report["state_dir_mode"] = oct(state.stat().st_mode & 0o777) if state.exists() else None
    fm.say("agent started by systemctl")
    try:
        serve_control()
    finally:
        report["state_dir_entries"] = sorted(p.name for p in state.iterdir()) \
            if state.exists() else []
        old = str(report["props"].get("MainPID"))  # type: ignore[union-attr]
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(old), signal.SIGKILL)  # a crash: Restart=on-failure brings it back
        report["restart"] = wait_restarted(old)
        stop = sh("systemctl", "stop", "ferryman", timeout=120)
        report["stop"] = {"rc": stop.returncode, "props": unit_props()}
        report["journal"] = journal()[-80:]
        fm.emit("service", report)


def serve_control() -> None:
    """vm1's requests: ping (is the unit active), verify (the moved workload), quit."""
    srv = socket.create_server(("0.0.0.0", fm.CTL_PORT))
    srv.settimeout(fm.STEP_TMO * 4)

    def answer(req: dict[str, Any]) -> object:
        if req.get("cmd") == "ping":
            return {"agent": sh("systemctl", "is-active", "ferryman").stdout.strip()
                    == "active"}
        # fm.verify reads the agent's log lines (here: its journal) for the resume time
        Path(fm.AGENT_LOG).write_text("\n".join(journal()) + "\n")
        return fm.verify(int(req["pid"]), str(req["status"]))

    fm.serve_requests(srv, answer)


def source() -> None:
    end = time.monotonic() + fm.STEP_TMO
    while time.monotonic() < end:
        try:
            if fm.ask({"cmd": "ping"}).get("agent"):
                break
        except OSError:
            pass
        time.sleep(0.3)
    fm.STATE.mkdir(parents=True, exist_ok=True)
    peer = f"{os.environ['VM_PEER']}:{fm.AGENT_PORT}"
    data: dict[str, object] = {}
    try:
        pid, status = fm.start_workload("svc", WORKLOAD_MIB, 100, 3000)
        chk = subprocess.run([*fm.PY, "-m", "ferryman", "check", str(pid), "--to", peer,
                              "--pki", fm.PKI, "--name", "vm1", "--state-dir", str(fm.STATE),
                              "--json"], env=fm.ENV, capture_output=True, text=True,
                             check=False, timeout=fm.STEP_TMO)
        data["check"] = {"rc": chk.returncode, "stderr": chk.stderr.splitlines()[-10:]}
        with contextlib.suppress(ValueError):
            data["check"]["verdict"] = json.loads(chk.stdout)  # type: ignore[index]
        report = "/tmp/svc.json"
        res = subprocess.run([*fm.PY, "-m", "ferryman", "migrate", str(pid), "--to", peer,
                              "--pki", fm.PKI, "--name", "vm1", "--state-dir", str(fm.STATE),
                              "--report", report, "--mode", "cold"], env=fm.ENV,
                             capture_output=True, text=True, check=False,
                             timeout=fm.STEP_TMO * 2)
        data.update(rc=res.returncode, stderr=res.stderr.splitlines()[-30:])
        try:
            data["report"] = json.loads(Path(report).read_text())
        except (OSError, ValueError) as exc:
            data["report"] = {"error": str(exc)}
        if res.returncode == 0:
            dest_pid = data["report"].get("destination_pid")  # type: ignore[attr-defined]
            data["status"] = fm.ask({"cmd": "verify", "pid": dest_pid or pid,
                                     "status": status})
        fm.say(f"svc: migrate rc={res.returncode}")
    finally:
        fm.emit("service-migration", data)
        fm.ask({"cmd": "quit"})


def main() -> int:
    fm.setup_kernel()
    if os.environ["VM_NAME"] == "vm2":
        destination()
    else:
        source()
    fm.say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
