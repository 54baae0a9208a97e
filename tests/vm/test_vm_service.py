"""``systemctl start ferryman`` brings an agent up: two QEMU guests booted with systemd as PID 1
(tests/vm/scenarios/service.py). vm2 installs the agent as README's "Running the agent" says
(a config file, ``ferryman serve --install-unit``) and starts the unit; vm1 checks and moves a
workload to it; then vm2 kills the agent (systemd restarts it) and stops it.

The same readiness protocol without systemd: tests/integration/test_service.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.vm.vmrun import Run, make_pki, run_vm

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def guests(vm_image: float, tmp_path_factory: pytest.TempPathFactory) -> Run:
    outdir = tmp_path_factory.mktemp("vm-service")
    pki = make_pki(tmp_path_factory.mktemp("vm-pki"))
    run = run_vm(["python3", "tests/vm/scenarios/service.py"], outdir=outdir, pair=True,
                 env={"PKI": str(pki)}, mem_mib=1024, cpus=1, timeout=900, shares=(pki,),
                 systemd=True)
    print(f"\n[vm] image {vm_image:.1f}s; two systemd guests + service scenario "
          f"{run.seconds:.1f}s (rc={run.rc}); logs in {outdir}")
    return run


def service(run: Run) -> dict[str, Any]:
    s: dict[str, Any] = run.result("service")
    print("[vm] service:", json.dumps({k: v for k, v in s.items() if k != "journal"}))
    return s


def test_systemctl_start_returns_once_the_agent_accepts_tls(guests: Run) -> None:
    s = service(guests)
    assert s["install"]["rc"] == 0, s["install"]
    assert s["install"]["exec_start"] == [
        "ExecStart=/usr/local/bin/ferryman serve --config /etc/ferryman/agent.toml"], s["install"]
    start = s["start"]
    assert start["rc"] == 0, start
    assert start["handshake"] == "vm2", start  # no retry: READY=1 came after the listener
    p = s["props"]
    assert p["Type"] == "notify", p
    assert (p["ActiveState"], p["SubState"]) == ("active", "running"), p
    assert p["StatusText"] == "listening on 10.99.0.2:7070", p
    assert p["KillMode"] == "process", p
    assert s["state_dir_mode"] == "0o700", s  # StateDirectory=ferryman, 0700


def test_the_service_agent_receives_a_migration(guests: Run) -> None:
    m: dict[str, Any] = guests.result("service-migration")
    assert m["check"]["rc"] == 0, m["check"]
    assert m["check"]["verdict"]["can_move"] is True, m["check"]
    assert m["rc"] == 0, "\n".join(m["stderr"]) + "\n" + guests.describe()
    assert m["report"]["result"] == "committed", m["report"]
    assert m["status"].get("bad_pages") == 0, m["status"]  # the restored workload, on vm2
    assert m["status"]["pages"] == 16 * 256, m["status"]
    assert "migrations" in service(guests)["state_dir_entries"]  # under /var/lib/ferryman


def test_systemd_restarts_a_killed_agent_and_stops_it(guests: Run) -> None:
    s = service(guests)
    r = s["restart"]
    assert r["seconds"] is not None, r  # active again, with another main PID
    assert r["handshake"] == "vm2", r
    assert int(r["props"]["NRestarts"]) == 1, r
    stop = s["stop"]
    assert stop["rc"] == 0, stop
    assert stop["props"]["ActiveState"] == "inactive", stop
    assert stop["props"]["Result"] == "success", stop  # exit 0 on SIGTERM
    journal = "\n".join(s["journal"])
    assert "agent vm2 listening on 10.99.0.2:7070" in journal, journal
    assert "session from vm1" in journal, journal  # the agent's log is in the journal
    assert "agent vm2 stopping" in journal, journal
