"""PID control for real, each scenario in a fresh PID namespace (``unshare -p -f
--mount-proc``) so that no PID of this machine can collide with the ones we ask for.

The scenario script runs as PID 1 of the namespace, reaps every child it starts and prints
its findings as JSON; when it exits the kernel kills whatever is left in the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

PY = sys.executable

SCENARIOS = r'''
import json, os, signal, subprocess, sys, threading
from ferryman.errors import FerrymanError
from ferryman.host.pidctl import spawn_with_pid

def nspid(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]

def report_own_pid(pid, method, tmp):
    """Start a shell at PID pid that writes its own PID ($$) to a file; reap it."""
    out = os.path.join(tmp, f"pid-{pid}")
    child = spawn_with_pid(["sh", "-c", 'echo $$ > "$0"', out], pid, method=method)
    seen = nspid(child)  # running or a zombie: both still have their /proc entry
    _, status = os.waitpid(child, 0)
    return {"returned": child, "nspid": seen, "status": status,
            "self_reported": int(open(out).read())}

def error(exc):
    return {"type": type(exc).__name__, "line": exc.one_line(), "pid": exc.pid,
            "errno": exc.errno, "got": getattr(exc, "got", None)}

def exact(tmp, method, *pids):
    return [report_own_pid(pid, method, tmp) for pid in pids]

def taken(tmp):
    holder = spawn_with_pid(["sleep", "30"], 5000)
    result = {"holder": holder}
    try:
        for method in ("clone3", "ns_last_pid", "auto"):
            try:
                spawn_with_pid(["true"], 5000, method=method)
                result[method] = None
            except FerrymanError as exc:
                result[method] = error(exc)
        result["holder_nspid"] = nspid(holder)
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    return result

def threaded(tmp):
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        spawn_with_pid(["true"], 600, method="clone3")
        return None
    except FerrymanError as exc:
        return error(exc)
    finally:
        stop.set()
        worker.join()

def cli_next(tmp, last):
    cli = subprocess.run([sys.executable, "-m", "ferryman", "pid", "next", str(last)],
                         capture_output=True, text=True, check=False)
    # The very next process created in this namespace: a shell reporting its own PID.
    shell = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    return {"cli_code": cli.returncode, "cli_out": cli.stdout, "cli_err": cli.stderr,
            "next_pid": int(shell.stdout)}

name, tmp, *args = sys.argv[1:]
result = globals()[name](tmp, *[a if not a.isdigit() else int(a) for a in args])
print(json.dumps({"me": os.getpid(), "result": result}))
'''


@pytest.fixture(scope="module")
def unshare() -> str:
    path = shutil.which("unshare")
    if path is None:
        pytest.fail("unshare (util-linux) is not installed")
    if os.geteuid() != 0:
        pytest.fail("PID control tests need root (CAP_SYS_ADMIN for PID namespaces)")
    return path


def in_new_pid_namespace(unshare: str, tmp_path: Path, scenario: str, *args: object) -> Any:
    script = tmp_path / "scenario.py"
    script.write_text(SCENARIOS)
    proc = subprocess.run(
        [unshare, "--pid", "--fork", "--mount-proc", PY, str(script), scenario, str(tmp_path),
         *map(str, args)],
        capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["me"] == 1  # really alone in a new namespace
    return data["result"]


@pytest.mark.parametrize("method", ["clone3", "ns_last_pid", "auto"])
def test_child_gets_exactly_the_pid_asked_for(unshare: str, tmp_path: Path, method: str
                                              ) -> None:
    pids = (4321, 301, 1_000_000)
    for pid, seen in zip(pids, in_new_pid_namespace(unshare, tmp_path, "exact", method, *pids),
                         strict=True):
        assert seen == {"returned": pid, "nspid": [pid], "status": 0, "self_reported": pid}


def test_a_taken_pid_is_a_clear_error_whatever_the_method(unshare: str, tmp_path: Path
                                                          ) -> None:
    result = in_new_pid_namespace(unshare, tmp_path, "taken")
    assert result["holder"] == 5000
    assert result["holder_nspid"] == [5000]  # the holder was left alone
    for method in ("clone3", "ns_last_pid", "auto"):
        assert result[method] == {
            "type": "PidTaken", "pid": 5000, "errno": 17, "got": None,
            "line": "PID 5000 is taken by another process: "
                    "free that PID or choose another; see 'ps -p PID'"}, method


def test_clone3_refuses_a_multi_threaded_caller(unshare: str, tmp_path: Path) -> None:
    result = in_new_pid_namespace(unshare, tmp_path, "threaded")
    assert result["type"] == "PidControlError"
    assert "multi-threaded" in result["line"]


def test_cli_pid_next_makes_the_next_process_get_n_plus_1(unshare: str, tmp_path: Path
                                                           ) -> None:
    result = in_new_pid_namespace(unshare, tmp_path, "cli_next", 700)
    assert result["cli_code"] == 0, result["cli_err"]
    assert result["cli_out"] == "the next process created in this PID namespace gets PID 701\n"
    assert result["next_pid"] == 701


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "ferryman", *argv], capture_output=True, text=True,
                          timeout=20, check=False)


@pytest.mark.parametrize("offset", [None, -1, 0])
def test_cli_pid_next_rejects_n_whose_successor_is_no_pid(offset: int | None) -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    value = 0 if offset is None else pid_max + offset  # 0, pid_max - 1, pid_max
    res = run_cli("pid", "next", str(value))
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr == (f"ferryman: error: cannot make the next PID {value + 1}: give N from "
                          f"1 to {pid_max - 2}: the next PID is N+1 and must be below "
                          f"kernel.pid_max = {pid_max}\n")


def test_cli_pid_next_without_privilege_is_one_clear_line(tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is not installed")
    # root without capabilities, not another user: another user may not read the checkout
    # (a clone under /root is 0700), and what the write needs is the capability, not the uid
    res = subprocess.run(
        [setpriv, "--inh-caps=-all", "--bounding-set=-all", PY, "-m", "ferryman",
         "pid", "next", "500"],
        capture_output=True, text=True, timeout=20, check=False, cwd=tmp_path)
    assert res.returncode == 30, res.stderr
    assert res.stderr == (
        "ferryman: error: cannot write /proc/sys/kernel/ns_last_pid: permission denied: "
        "run as root (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in the PID namespace)\n")
