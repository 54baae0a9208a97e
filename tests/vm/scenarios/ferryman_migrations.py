#!/usr/bin/env python3
"""Guest side of tests/vm/test_vm_ferryman.py: ferryman migrations vm1 -> vm2 in one boot.

Runs in both guests of ``run-vm.sh -2`` with the repository shared read-only (ferryman runs
from its ``src/``, with the guest's own python3 and the host-built criu 4.2 the image carries).

* vm2 runs ``ferryman serve`` and a small control server (port 29, one JSON line per request):
  ``{"cmd": "verify", "pid": P, "status": PATH}`` makes the restored workload verify every page
  (SIGUSR1), answers its status and kills it; ``{"cmd": "quit"}`` ends vm2's part.
* vm1 runs the scenarios from ``$SCENARIOS`` (a JSON list of ``{"name", "mib", "rate",
  "args"}``) in order: it starts the test workload (tests/support/workload.py) dirtying
  ``rate`` pages per second, runs ``ferryman migrate PID --to vm2 ARGS``, asks vm2 to verify,
  and reports ``@@ NAME {"rc", "report", "status", "stderr"}`` for the test.
* A scenario with ``"runc": true`` moves a runc container instead (``migrate --runc NAME``):
  a busybox bundle from the image's template (/opt/ferryman/busybox-rootfs) whose init
  appends 1, 2, 3... to /data/log every 20 ms while a ``sort`` holds ``mib`` MiB that
  never change. After the migration vm1 reports its own copy of the log (stopped at the
  freeze) and whether runc still knows the container; vm2 (``{"cmd": "container"}``)
  reports the container's state and its log a second later, then deletes it. With
  ``"check": true``, vm1 first runs ``ferryman check --runc NAME --json`` and reports it.
  vm2 runs a second agent on port 7071 whose runc fails every restore (``"port": 7071``):
  the container must roll back to vm1 and keep writing there.
* A scenario with ``"podman": true`` moves a Podman container with a live client connection
  and its service address (``migrate --podman NAME``): tests/vm/scenarios/podman_guest.py.

Environment: PKI (a directory with ca.pem and vm1/vm2 credentials), SCENARIOS, STEP_TMO.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
PY = [sys.executable]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
PKI = os.environ.get("PKI", "/tmp/pki")
STEP_TMO = float(os.environ.get("STEP_TMO", "300"))
CTL_PORT, AGENT_PORT = 29, 7070
FAILING_PORT = 7071  # vm2's second agent, whose runc fails every restore
FAILING_RUNC = Path("/tmp/failing-runc")
STATE = Path("/var/lib/ferryman")
AGENT_LOG = "/tmp/agent.log"
MOVABLE = "10.99.0.0/24@eth1"  # service addresses on the guests' link (Podman scenarios)


def emit(key: str, value: object) -> None:
    print(f"@@ {key} {json.dumps(value)}", flush=True)


def say(text: str) -> None:
    print(f"[{os.environ.get('VM_NAME')} {time.strftime('%T')}] {text}", flush=True)


def serve_requests(srv: socket.socket, answer: Callable[[dict[str, Any]], object]) -> None:
    """vm2's control server: one JSON request a connection, ``answer(request)`` as the JSON
    reply, until vm1 says ``quit`` (or ``srv``'s accept times out)."""
    while True:
        conn, _ = srv.accept()
        with conn, conn.makefile("rw") as fh:
            req = json.loads(fh.readline() or "{}")
            if req.get("cmd") == "quit":
                fh.write("{}\n")
                return
            fh.write(json.dumps(answer(req)) + "\n")


def setup_kernel() -> None:
    # THP off: with huge pages soft-dirty marks 2 MiB at a time and pre-copy cannot converge
    Path("/sys/kernel/mm/transparent_hugepage/enabled").write_text("never\n")
    Path("/proc/sys/fs/pipe-max-size").write_text("4194304\n")  # lazy pages (hybrid)
    crit = subprocess.run(["criu", "--version"], capture_output=True, text=True, check=False)
    soft = subprocess.run(["criu", "check", "--feature", "mem_dirty_track"],
                          capture_output=True, check=False).returncode == 0
    emit(f"{os.environ['VM_NAME']}-guest", {"kernel": os.uname().release,
                                            "criu": crit.stdout.strip(), "soft_dirty": soft})


def status_after(path: str, after: float) -> dict[str, object]:
    end = time.time() + STEP_TMO
    while time.time() < end:
        try:
            st: dict[str, object] = json.loads(Path(path).read_text())
            if float(st["time"]) > after:  # type: ignore[arg-type]
                return st
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"no status newer than {after} in {path}")


# ----------------------------------------------------------------------------- vm2

def destination() -> None:
    import podman_guest  # here: it imports this module

    STATE.mkdir(parents=True, exist_ok=True)
    log = open(AGENT_LOG, "wb")  # noqa: SIM115 - lives as long as the agent
    ip = os.environ["VM_IP"].split("/")[0]
    agent = subprocess.Popen([*PY, "-m", "ferryman", "-v", "serve", "--listen",
                              f"{ip}:{AGENT_PORT}",
                              "--pki", PKI, "--name", "vm2", "--state-dir", str(STATE),
                              "--movable-addresses", MOVABLE],
                             env=ENV, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    # The same node, but its runc fails at restore: a migration to it must roll back.
    FAILING_RUNC.write_text('#!/bin/sh\ncase " $* " in *" restore "*) exit 1 ;; esac\n'
                            'exec runc "$@"\n')
    FAILING_RUNC.chmod(0o755)
    failing = subprocess.Popen([*PY, "-m", "ferryman", "serve", "--listen",
                                f"{ip}:{FAILING_PORT}", "--pki", PKI, "--name", "vm2",
                                "--state-dir", f"{STATE}-failing", "--runc",
                                str(FAILING_RUNC), "--movable-addresses", MOVABLE],
                               env=podman_guest.failing_env()
                               if podman_guest.FAILING_CONF.exists() else ENV,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    srv = socket.create_server(("0.0.0.0", CTL_PORT))
    srv.settimeout(STEP_TMO * 4)
    say("agent and control server up")

    def answer(req: dict[str, Any]) -> object:
        if req.get("cmd") == "ping":
            return {"agent": agent.poll() is None and failing.poll() is None}
        if req.get("cmd") == "podman":
            return podman_guest.container_here(str(req["name"]), str(req["address"]))
        if req.get("cmd") == "container":
            return container_here(str(req["id"]))
        return verify(int(req["pid"]), str(req["status"]))

    try:
        serve_requests(srv, answer)
    finally:
        for a in (agent, failing):
            a.send_signal(signal.SIGTERM)
            try:
                a.wait(10)
            except subprocess.TimeoutExpired:
                a.kill()
        tail = Path(AGENT_LOG).read_text(errors="replace").splitlines()[-40:]
        emit("vm2-agent", {"rc": agent.returncode, "log_tail": tail})


def resumed_at(pid: int) -> float | None:
    """vm2's time at which its agent resumed ``pid`` (the last such line in its log)."""
    found = None
    for line in Path(AGENT_LOG).read_text(errors="replace").splitlines():
        if line.endswith(f": PID {pid} resumed"):
            found = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return found


def verify(pid: int, status: str) -> dict[str, object]:
    """The moved workload's status, with ``post_resume_stall_ms``: the longest it went
    without a beat after vm2's agent resumed it, all on vm2's clock (from the resume to its
    first beat here, and between two beats here)."""
    try:
        # its session: a shell job joins the restoring criu's own, never the agent's
        ids = {"sid": os.getsid(pid), "pgid": os.getpgid(pid), "agent_sid": os.getsid(0)}
        t0 = time.time()
        os.kill(pid, signal.SIGUSR1)
        st = status_after(status, t0)
        st.update(ids)
    except (OSError, TimeoutError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    resumed, moved = resumed_at(pid), st.get("moved_at")
    st["resumed_at"] = resumed
    if resumed is not None and isinstance(moved, float):
        st["post_resume_stall_ms"] = round(max((moved - resumed) * 1000,
                                               float(st["max_gap_here_ms"])), 3)  # type: ignore[arg-type]
    return st


def runc_state(cid: str) -> dict[str, object] | None:
    res = subprocess.run(["runc", "state", cid], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return None
    state: dict[str, object] = json.loads(res.stdout)
    return state


def log_facts(path: Path) -> dict[str, object]:
    """How many lines the container's log has and whether they are exactly 1..N."""
    try:
        lines = path.read_text().split()
    except OSError as exc:
        return {"lines": 0, "sequential": False, "error": str(exc)}
    return {"lines": len(lines),
            "sequential": lines == [str(i) for i in range(1, len(lines) + 1)]}


def container_here(cid: str) -> dict[str, object]:
    """vm2: the moved container's state and its log a second later (in the rootfs vm2's agent
    chose for it, which runc's state names); then it goes."""
    first = runc_state(cid)
    time.sleep(1)
    rootfs = Path(str(first["rootfs"])) if first is not None else Path("/nonexistent")
    answer: dict[str, object] = {"state": first, "log": log_facts(rootfs / "data" / "log")}
    subprocess.run(["runc", "delete", "--force", cid], capture_output=True, check=False)
    return answer


# ----------------------------------------------------------------------------- vm1

def ask(req: dict[str, object]) -> dict[str, object]:
    with socket.create_connection((os.environ["VM_PEER"], CTL_PORT), timeout=STEP_TMO) as s, \
            s.makefile("rw") as fh:
        fh.write(json.dumps(req) + "\n")
        fh.flush()
        answer: dict[str, object] = json.loads(fh.readline())
        return answer


def wait_for_destination() -> None:
    end = time.time() + STEP_TMO
    while time.time() < end:
        try:
            if ask({"cmd": "ping"}).get("agent"):
                for port in (AGENT_PORT, FAILING_PORT):
                    with socket.create_connection((os.environ["VM_PEER"], port), timeout=5):
                        pass
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError("vm2's agent did not come up")


def start_workload(name: str, mib: int, rate: float, pid_base: int,
                   shell_job: bool = False) -> tuple[int, str]:
    """``shell_job``: started by a shell that leads its session, as ``cmd &`` at a prompt:
    the workload stays in the shell's session, whose leader does not move with it."""
    # a PID that is free on vm2 too (criu restores the same PID there)
    Path("/proc/sys/kernel/ns_last_pid").write_text(f"{pid_base}\n")
    status = f"/tmp/wl-{name}.status"
    t0 = time.time()
    argv = [*PY, str(REPO / "tests/support/workload.py"), "--mib", str(mib), "--dirty-rate",
            str(rate), "--heartbeat-ms", "10", "--status", status, "--seed", name]
    if shell_job:
        argv = ["sh", "-c", '"$@" & wait', "sh", *argv]
    subprocess.Popen(["setsid", *argv], cwd="/tmp", stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    st = status_after(status, t0 - 1)
    return int(st["pid"]), status  # type: ignore[call-overload]


def source(scenarios: list[dict[str, object]]) -> None:
    wait_for_destination()
    STATE.mkdir(parents=True, exist_ok=True)
    try:
        for n, sc in enumerate(scenarios):
            # a fresh PID range per scenario, below the guests' pid_max (32768)
            run_scenario(sc, 3000 + 1500 * (n % 19), n)
    finally:
        ask({"cmd": "quit"})


BUNDLES = Path("/var/lib/fm-bundles")
TEMPLATE = Path("/opt/ferryman/busybox-rootfs")


def container_init(mib: int) -> list[str]:
    """``mib`` MiB held by a sort that waits forever for the end of its input, and a counter
    appending to /data/log every 20 ms (the init shell itself stays small: it forks usleep)."""
    return ["sh", "-c",
            f"{{ head -c {mib << 20} /dev/zero | tr '\\0' a; sleep 2147483647; }} | sort "
            ">/dev/null & i=0; while :; do i=$((i+1)); echo $i >> /data/log; usleep 20000; done"]


def start_container(name: str, mib: int) -> Path:
    """A bundle from the image's busybox template (the guest's own network), run detached
    with its stdio as pipes, as tests/support/bundle.py does on the host."""
    bundle = BUNDLES / name
    BUNDLES.mkdir(parents=True, exist_ok=True)
    bundle.mkdir()
    subprocess.run(["cp", "-a", str(TEMPLATE), str(bundle / "rootfs")], check=True)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = container_init(mib)
    config["root"]["readonly"] = False
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                     if ns["type"] != "network"]
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    fds = [os.pipe() for _ in range(3)]
    try:
        subprocess.run(["runc", "run", "--detach", "--bundle", str(bundle), name],
                       stdin=fds[0][0], stdout=fds[1][1], stderr=fds[2][1], timeout=120,
                       check=True)
    finally:
        for r, w in fds:
            os.close(r)
            os.close(w)
    log = bundle / "rootfs" / "data" / "log"
    end = time.time() + STEP_TMO
    while int(log_facts(log)["lines"]) < 10:  # type: ignore[call-overload]
        if time.time() > end:
            raise TimeoutError(f"container {name} wrote nothing")
        time.sleep(0.1)
    return bundle


def pre_dumps_over_tls(report: object) -> list[bool]:
    """Per pre-dump: whether CRIU's log (runc runs it at debug level) has the TLS handshake
    with the destination's page server (the configuration file is the only way TLS gets in)."""
    mid = report.get("migration_id") if isinstance(report, dict) else None
    sets = sorted((STATE / "migrations" / str(mid)).glob("pre-*"),
                  key=lambda d: int(d.name.split("-")[1]))
    found = []
    for d in sets:
        try:
            found.append("TLS handshake completed" in (d / "dump.log").read_text(
                errors="replace"))
        except OSError:
            found.append(False)
    return found


def run_container_scenario(sc: dict[str, object]) -> None:
    name = str(sc["name"])
    bundle = start_container(name, int(sc["mib"]))  # type: ignore[call-overload]
    time.sleep(float(sc.get("settle", 2)))  # type: ignore[arg-type]
    peer = f"{os.environ['VM_PEER']}:{sc.get('port', AGENT_PORT)}"
    checked: dict[str, object] = {}
    if sc.get("check"):  # what 'ferryman check --runc' allows here, with soft-dirty
        chk = subprocess.run([*PY, "-m", "ferryman", "check", "--runc", name, "--to", peer,
                              "--pki", PKI, "--name", "vm1", "--state-dir", str(STATE),
                              "--json"], env=ENV, capture_output=True, text=True, check=False,
                             timeout=STEP_TMO)
        checked = {"rc": chk.returncode, "stderr": chk.stderr.splitlines()[-10:]}
        with contextlib.suppress(ValueError):
            checked["verdict"] = json.loads(chk.stdout)
    report = f"/tmp/{name}.json"
    say(f"{name}: migrating runc container {name} ({sc['mib']} MiB) {sc['args']}")
    t0 = time.monotonic()
    res = subprocess.run([*PY, "-m", "ferryman", "migrate", "--runc", name, "--to",
                          peer, "--pki", PKI, "--name", "vm1",
                          "--state-dir", str(STATE), "--report", report,
                          *map(str, sc["args"])],  # type: ignore[call-overload]
                         env=ENV, capture_output=True, text=True, check=False,
                         timeout=STEP_TMO * 4)
    wall = time.monotonic() - t0
    data: dict[str, object] = {"rc": res.returncode, "wall_s": wall,
                               "stderr": res.stderr.splitlines()[-30:], "check": checked}
    try:
        data["report"] = json.loads(Path(report).read_text())
    except (OSError, ValueError) as exc:
        data["report"] = {"error": str(exc)}
    log = bundle / "rootfs" / "data" / "log"
    data["source"] = {"state": runc_state(name), "log": log_facts(log),
                      "pre_dumps_over_tls": pre_dumps_over_tls(data["report"])}
    if res.returncode != 0:  # rolled back: it must run on here, its log growing
        time.sleep(1)
        data["source"]["log_later"] = log_facts(log)  # type: ignore[index]
    data["destination"] = ask({"cmd": "container", "id": name})
    subprocess.run(["runc", "delete", "--force", name], capture_output=True, check=False)
    say(f"{name}: rc={res.returncode} in {wall:.1f} s")
    emit(name, data)


def run_scenario(sc: dict[str, object], pid_base: int, n: int) -> None:
    if sc.get("podman"):
        import podman_guest  # here: it imports this module

        podman_guest.run_scenario(sc, n)
        return
    if sc.get("runc"):
        run_container_scenario(sc)
        return
    name = str(sc["name"])
    pid, status = start_workload(name, int(sc["mib"]), float(sc["rate"]),  # type: ignore[call-overload]
                                 pid_base, shell_job=bool(sc.get("shell_job")))
    sid_here = os.getsid(pid)
    time.sleep(float(sc.get("settle", 2)))  # type: ignore[arg-type]
    os.kill(pid, signal.SIGUSR2)  # the heartbeat gap counts from here
    report = f"/tmp/{name}.json"
    say(f"{name}: migrating PID {pid} ({sc['mib']} MiB, {sc['rate']} pages/s) {sc['args']}")
    t0 = time.monotonic()
    res = subprocess.run([*PY, "-m", "ferryman", "migrate", str(pid), "--to",
                          f"{os.environ['VM_PEER']}:{AGENT_PORT}", "--pki", PKI, "--name", "vm1",
                          "--state-dir", str(STATE), "--report", report,
                          *map(str, sc["args"])],  # type: ignore[call-overload]
                         env=ENV, capture_output=True, text=True, check=False,
                         timeout=STEP_TMO * 4)
    wall = time.monotonic() - t0
    data: dict[str, object] = {"rc": res.returncode, "wall_s": wall,
                               "stderr": res.stderr.splitlines()[-30:],
                               "source_sid": sid_here, "source_pid": pid}
    try:
        data["report"] = json.loads(Path(report).read_text())
    except (OSError, ValueError) as exc:
        data["report"] = {"error": str(exc)}
    if res.returncode == 0:
        dest_pid = data["report"].get("destination_pid")  # type: ignore[attr-defined]
        data["status"] = ask({"cmd": "verify", "pid": dest_pid or pid, "status": status})
    else:  # rolled back: it must still run here, memory intact
        try:
            t1 = time.time()
            os.kill(pid, signal.SIGUSR1)
            data["status"] = status_after(status, t1)
        except (OSError, TimeoutError) as exc:
            data["status"] = {"error": str(exc)}
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    say(f"{name}: rc={res.returncode} in {wall:.1f} s")
    emit(name, data)


def main() -> int:
    setup_kernel()
    if any(sc.get("podman") for sc in json.loads(os.environ.get("SCENARIOS", "[]"))):
        import podman_guest  # here: it imports this module

        podman_guest.setup()
    if os.environ["VM_NAME"] == "vm2":
        destination()
    else:
        source(json.loads(os.environ["SCENARIOS"]))
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
