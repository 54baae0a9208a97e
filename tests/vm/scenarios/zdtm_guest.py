#!/usr/bin/env python3
"""Guest side of tests/vm/test_vm_zdtm.py: CRIU's zdtm static tests moved vm1 -> vm2, pre-copy
and hybrid, by hand and by ferryman, in one two-guest boot (soft-dirty: ``criu pre-dump
--track-mem`` works here, unlike on the host).

Runs in both guests of ``run-vm.sh -2``, the repository, the built static tests and the PKI
shared read-only, ``$RUNS`` shared read-write at the same path in both (the storage both nodes
see: each test's files, and the by-hand images; remounted with ``cache=mmap`` so that tests can
map their files).

* vm2 runs ``ferryman serve`` and a control server (port 29, one JSON request and answer per
  connection) through which vm1 runs commands on vm2: ``run`` (wait for it), ``spawn`` and
  ``wait`` (in the background), ``gone`` (a daemon's PID exited), ``exists``, ``stop`` (SIGTERM
  the moved test and read its PASS/FAIL, tests/zdtm/zdtmtest.py), ``kill``, ``quit``.
* vm1 takes ``$TESTS`` (JSON: ``[{"name", "tcp", "local", "argv"}]``, argv from the host's
  ``make -n``; ``local``: the test works in a directory of each guest's tmpfs, local_cwd)
  and ``$MODES`` (precopy,hybrid); for each test, mode and tool it starts the test in PID/IPC/UTS
  namespaces of its own (tests/zdtm/launch.py), moves it, has vm2 stop it and reports
  ``@@ zdtm {"name", "mode", "tool", "reason", "report"}`` (reason None: PASS there).

By hand is CRIU's iterative migration (https://criu.org/Iterative_migration) as the host's
by-hand column does it, with CRIU's TLS and the cluster certificates: ``criu page-server`` on
vm2 per iteration (``--prev-images-dir`` from the second on), ``criu pre-dump --track-mem
--page-server`` twice on vm1, then the final ``criu dump --prev-images-dir ../2 --track-mem``:
to the page server (pre-copy), or ``--lazy-pages`` serving the rest itself (hybrid: vm2 gets the
image files with ``parent`` -> ``../2``, runs ``criu lazy-pages --page-server`` and ``criu
restore --lazy-pages``). The image files are copied with ``cp`` over the shared storage, and
``criu restore -d`` runs on vm2. ``--tcp-established --network-lock nftables`` where the test
has live TCP connections. Ferryman is ``ferryman migrate --mode MODE --max-downtime 5000``
(TCG runs CRIU ~20x slower than hardware: tests/vm/test_vm_ferryman.py) to vm2's agent.

Environment: PKI, RUNS, TESTS, MODES, STATIC (the static tests' directory), STEP_TMO.
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

REPO = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(REPO), str(REPO / "src")]
from ferryman_migrations import serve_requests  # noqa: E402  (tests/vm/scenarios)
from tests.zdtm.zdtmtest import ZdtmError, ZdtmRun, kill_tree  # noqa: E402

from ferryman.criu.logs import first_error  # noqa: E402

PY = [sys.executable]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
PKI = Path(os.environ.get("PKI", "/tmp/pki"))
RUNS = Path(os.environ.get("RUNS", "/tmp/zdtm-runs"))
STATIC = Path(os.environ.get("STATIC", "/nonexistent"))
STEP_TMO = float(os.environ.get("STEP_TMO", "120"))
CTL_PORT, AGENT_PORT, PS_PORT, LAZY_PORT = 29, 7070, 27100, 27200
STATE = Path("/var/lib/ferryman")
LAZY_WORK = Path("/run/zdtm-lazy")  # lazy-pages' socket: not on the 9p share
LOCAL_CWD = Path("/run/zdtm-local")  # ``local`` tests' working directories (local_cwd)
PRE_DUMPS = 2
TCP_ARGS = ["--tcp-established", "--network-lock", "nftables"]
PID_MAX = 4194304
FIRST_TEST_PID = 100000  # vm1 starts each test above every PID vm2 uses itself
ERR_TAIL = 400


def emit(key: str, value: object) -> None:
    print(f"@@ {key} {json.dumps(value)}", flush=True)


def say(text: str) -> None:
    print(f"[{os.environ.get('VM_NAME')} {time.strftime('%T')}] {text}", flush=True)


def remount_runs() -> None:
    """The run share again with ``cache=mmap``: 9p without a cache cannot map files
    (``mmap`` fails with EINVAL), and zdtm tests map their files (maps00, unlink_mmap00...).
    Reads and writes stay uncached, so what one guest writes the other sees."""
    for line in Path("/run/ctl/shares").read_text().splitlines():
        tag, _, path = line.split(maxsplit=2)
        if Path(path) == RUNS:
            subprocess.run(["umount", str(RUNS)], check=True)
            subprocess.run(["mount", "-t", "9p", "-o", "trans=virtio,version=9p2000.L,"
                            "msize=262144,cache=mmap", tag, str(RUNS)], check=True)
            return
    raise RuntimeError(f"{RUNS} is not a share of this guest")


def setup_kernel() -> None:
    Path("/sys/kernel/mm/transparent_hugepage/enabled").write_text("never\n")
    Path("/proc/sys/fs/pipe-max-size").write_text("4194304\n")  # lazy pages (hybrid)
    Path("/proc/sys/kernel/pid_max").write_text(f"{PID_MAX}\n")
    soft = subprocess.run(["criu", "check", "--feature", "mem_dirty_track"],
                          capture_output=True, check=False).returncode == 0
    emit(f"{os.environ['VM_NAME']}-guest", {"kernel": os.uname().release, "soft_dirty": soft})


def tls(me: str, *, server: bool) -> list[str]:
    args = ["--tls", "--tls-cacert", str(PKI / "ca.pem"), "--tls-cert", str(PKI / f"{me}.pem"),
            "--tls-key", str(PKI / f"{me}.key")]
    # the server checks the client's certificate against its own --address otherwise
    return [*args, "--tls-no-cn-verify"] if server else args


def tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][-ERR_TAIL:] if lines else ""


# ----------------------------------------------------------------------------- vm2

class Destination:
    def __init__(self) -> None:
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "ping":
            return {"ok": True}
        if cmd == "run":
            res = subprocess.run(req["argv"], capture_output=True, text=True, check=False,
                                 timeout=STEP_TMO, cwd=req.get("cwd"))
            return {"rc": res.returncode, "err": tail(res.stderr + res.stdout)}
        if cmd == "spawn":
            with open(req["log"], "wb") as log:
                p = subprocess.Popen(req["argv"], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log)
            self.procs[p.pid] = p
            return {"pid": p.pid}
        if cmd == "wait":
            p = self.procs[int(req["pid"])]
            try:
                rc = p.wait(float(req.get("timeout", STEP_TMO)))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                return {"rc": None}
            del self.procs[p.pid]
            return {"rc": rc}
        if cmd == "kill":
            p = self.procs.pop(int(req["pid"]), None)
            if p is not None:
                p.kill()
                p.wait()
            return {}
        if cmd == "gone":  # a daemon (not our child): wait for its PID to go
            end = time.monotonic() + float(req.get("timeout", STEP_TMO))
            while Path(f"/proc/{int(req['pid'])}").exists():
                if time.monotonic() > end:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(req["pid"]), signal.SIGKILL)
                    return {"gone": False}
                time.sleep(0.02)
            return {"gone": True}
        if cmd == "exists":
            end = time.monotonic() + float(req.get("timeout", STEP_TMO))
            while not Path(req["path"]).exists():
                if time.monotonic() > end:
                    return {"exists": False}
                time.sleep(0.02)
            return {"exists": True}
        if cmd == "stop":
            run = ZdtmRun(STATIC, req["name"], Path(req["run_dir"]))
            return {"reason": run.stop(int(req["pid"]), timeout=STEP_TMO)}
        if cmd == "kill_tree":
            kill_tree(int(req["pid"]))
            return {}
        return {"error": f"unknown request {cmd!r}"}


def destination() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    LAZY_WORK.mkdir(parents=True, exist_ok=True)
    ip = os.environ["VM_IP"].split("/")[0]
    log = open("/tmp/agent.log", "wb")  # noqa: SIM115 - lives as long as the agent
    agent = subprocess.Popen([*PY, "-m", "ferryman", "serve", "--listen", f"{ip}:{AGENT_PORT}",
                              "--pki", str(PKI), "--name", "vm2", "--state-dir", str(STATE)],
                             env=ENV, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    dest = Destination()
    srv = socket.create_server(("0.0.0.0", CTL_PORT))
    srv.settimeout(STEP_TMO * 10)
    say("agent and control server up")

    def answer(req: dict[str, Any]) -> object:
        if req.get("cmd") == "ping" and agent.poll() is not None:
            return {"ok": False}
        try:
            return dest.handle(req)
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    try:
        serve_requests(srv, answer)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
        emit("vm2-agent", {"rc": agent.returncode, "log_tail":
                           Path("/tmp/agent.log").read_text(errors="replace").splitlines()[-30:]})


# ----------------------------------------------------------------------------- vm1

class Failed(Exception):
    """A step of a move failed: the message is the cell's reason."""


def ask(req: dict[str, Any]) -> dict[str, Any]:
    with socket.create_connection((os.environ["VM_PEER"], CTL_PORT),
                                  timeout=STEP_TMO + 30) as s, s.makefile("rw") as fh:
        fh.write(json.dumps(req) + "\n")
        fh.flush()
        answer: dict[str, Any] = json.loads(fh.readline())
    if "error" in answer:
        raise Failed(f"vm2: {answer['error']}")
    return answer


def wait_for_destination() -> None:
    end = time.time() + STEP_TMO * 2
    while time.time() < end:
        with contextlib.suppress(OSError, ValueError, Failed):
            if ask({"cmd": "ping"}).get("ok"):
                with socket.create_connection((os.environ["VM_PEER"], AGENT_PORT), timeout=5):
                    return
        time.sleep(0.3)
    raise TimeoutError("vm2's agent did not come up")


class Local:
    """vm1 itself, as the place a zdtm test starts (tests.zdtm.zdtmtest.Starter)."""

    def popen(self, *cmd: str, **kw: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(cmd), **kw)


def criu(argv: list[str], what: str, log: Path) -> None:
    """Run criu on vm1; Failed with CRIU's first error."""
    res = subprocess.run(["criu", *argv], capture_output=True, text=True, check=False,
                         timeout=STEP_TMO)
    if res.returncode != 0:
        raise Failed(f"{what}: {first_error(log) or tail(res.stderr) or f'rc {res.returncode}'}")


def remote_criu(argv: list[str], what: str, log: Path) -> None:
    got = ask({"cmd": "run", "argv": ["criu", *argv]})
    if got["rc"] != 0:
        raise Failed(f"{what} (vm2): {first_error(log) or got['err'] or 'rc ' + str(got['rc'])}")


def copy_images(src: Path, dst: Path) -> None:
    """``cp`` the image files (not logs, not the ``parent`` link) over the shared storage."""
    for f in src.iterdir():
        if f.is_file() and not f.is_symlink() and f.suffix != ".log":
            shutil.copy2(f, dst / f.name)


def listening(pid: int, port: int) -> bool:
    hexport = f":{port:04X}"
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 3 and cols[1].endswith(hexport) and cols[3] == "0A":
                    return True
    return False


def by_hand(pid: int, run_dir: Path, mode: str, tcp: bool, n: int) -> int:
    """Pre-copy or hybrid typed by hand; the test's PID on vm2."""
    me, peer = os.environ["VM_IP"].split("/")[0], os.environ["VM_PEER"]
    a, b = run_dir / "images-a", run_dir / "images-b"
    tcpa = TCP_ARGS if tcp else []
    last = PRE_DUMPS + 1
    for i in range(1, last + 1):
        (a / str(i)).mkdir(parents=True)
        (b / str(i)).mkdir(parents=True)
    for i in range(1, last + 1 if mode == "precopy" else last):
        prev = ["--prev-images-dir", f"../{i - 1}"] if i > 1 else []
        port = PS_PORT + n % 50
        remote_criu(["page-server", "-D", str(b / str(i)), *prev, "--address", peer,
                     "--port", str(port), *tls("vm2", server=True), "-d", "--pidfile",
                     str(b / str(i) / "page-server.pid"), "-o", "page-server.log"],
                    "criu page-server", b / str(i) / "page-server.log")
        ps = int((b / str(i) / "page-server.pid").read_text())
        action = "pre-dump" if i < last else "dump"
        try:
            criu([action, "-t", str(pid), "-D", str(a / str(i)), *prev, "--track-mem",
                  "--page-server", "--address", peer, "--port", str(port),
                  *tls("vm1", server=False), *(tcpa if i == last else []),
                  "-o", f"{action}.log"], f"criu {action}", a / str(i) / f"{action}.log")
        finally:
            if not ask({"cmd": "gone", "pid": ps, "timeout": 30})["gone"]:
                raise Failed("criu page-server (vm2) did not exit after the dump")
    final_a, final_b = a / str(last), b / str(last)
    pidfile = run_dir / "restored.pid"
    if mode == "precopy":
        copy_images(final_a, final_b)
        remote_criu(["restore", "-D", str(final_b), "-d", "--pidfile", str(pidfile), *tcpa,
                     "-o", "restore.log"], "criu restore", final_b / "restore.log")
        return int(pidfile.read_text())
    # hybrid: the final dump stays as the page server of the pages not pre-dumped
    port = LAZY_PORT + n % 50
    log = final_a / "dump.log"
    with (run_dir / "dump.stderr").open("wb") as err:
        dump = subprocess.Popen(["criu", "dump", "-t", str(pid), "-D", str(final_a),
                                 "--prev-images-dir", f"../{last - 1}", "--track-mem",
                                 "--lazy-pages", "--address", me, "--port", str(port),
                                 *tls("vm1", server=True), *tcpa, "-o", "dump.log"],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    lazyd: int | None = None
    try:
        end = time.monotonic() + STEP_TMO
        while not listening(dump.pid, port):
            if dump.poll() is not None or time.monotonic() > end:
                raise Failed(f"criu dump --lazy-pages: {first_error(log) or 'did not serve'}")
            time.sleep(0.02)
        copy_images(final_a, final_b)
        (final_b / "parent").symlink_to(f"../{last - 1}")
        work = LAZY_WORK / f"{n}"
        ask({"cmd": "run", "argv": ["mkdir", "-p", str(work)]})
        lazyd = ask({"cmd": "spawn", "log": str(run_dir / "lazy-pages.stderr"),
                     "argv": ["criu", "lazy-pages", "-D", str(final_b), "-W", str(work),
                              "--page-server", "--address", me, "--port", str(port),
                              *tls("vm2", server=False), "-o",
                              str(final_b / "lazy-pages.log")]})["pid"]
        if not ask({"cmd": "exists", "path": str(work / "lazy-pages.socket")})["exists"]:
            raise Failed("criu lazy-pages (vm2): "
                         + (first_error(final_b / "lazy-pages.log") or "no socket"))
        remote_criu(["restore", "-D", str(final_b), "-W", str(work), "--lazy-pages", "-d",
                     "--pidfile", str(pidfile), *tcpa, "-o", str(final_b / "restore.log")],
                    "criu restore --lazy-pages", final_b / "restore.log")
        moved = int(pidfile.read_text())
        try:  # the tail: every page served, then both exit
            rc = dump.wait(STEP_TMO)
        except subprocess.TimeoutExpired as exc:
            raise Failed("criu dump --lazy-pages: pages not all served in time") from exc
        if rc != 0:
            raise Failed(f"criu dump --lazy-pages: {first_error(log) or f'rc {rc}'}")
        got = ask({"cmd": "wait", "pid": lazyd})
        lazyd = None
        if got["rc"] != 0:
            raise Failed("criu lazy-pages (vm2): " + (first_error(final_b / "lazy-pages.log")
                                                      or f"rc {got['rc']}"))
        return moved
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
        if lazyd is not None:
            ask({"cmd": "kill", "pid": lazyd})


def by_ferryman(pid: int, run_dir: Path, mode: str, tcp: bool) -> tuple[int, dict[str, Any]]:
    report = run_dir / "ferryman.json"
    res = subprocess.run([*PY, "-m", "ferryman", "migrate", str(pid), "--to",
                          f"{os.environ['VM_PEER']}:{AGENT_PORT}", "--pki", str(PKI),
                          "--name", "vm1", "--state-dir", str(STATE), "--report", str(report),
                          "--mode", mode, "--max-downtime", "5000",
                          *(["--tcp-established"] if tcp else [])],
                         env=ENV, capture_output=True, text=True, check=False,
                         timeout=STEP_TMO * 3)
    (run_dir / "ferryman.stderr").write_text(res.stderr)
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(report.read_text())
    summary = {k: data.get(k) for k in ("mode", "dirty_tracker", "switched_to_postcopy",
                                         "destination_pid")}
    summary["iterations"] = [i.get("pages_written") for i in data.get("iterations") or []]
    moved = data.get("destination_pid")
    if res.returncode != 0 or not isinstance(moved, int):
        raise Failed(str(data.get("error") or tail(res.stderr) or f"rc {res.returncode}"))
    return moved, summary


def local_cwd(test: dict[str, Any], shared: Path) -> tuple[Path, tuple[str, ...]]:
    """The test's working directory and command line. Normally its run directory on the
    share; for a ``local`` test a directory on each guest's own tmpfs (the same path in both,
    vm2's made empty before the move, local_to_vm2), with only its ``.out`` log on the share:
    9p cannot hold what these tests make (a unix socket bound to a file, an unlinked file
    chmod-ed or truncated), and CRIU carries those itself (socket names, ghost files)."""
    argv = tuple(test["argv"])
    if not test.get("local"):
        return shared, argv
    cwd = LOCAL_CWD / shared.relative_to(RUNS)
    return cwd, tuple(f"--outfile={shared / a.split('=', 1)[1]}"
                      if a.startswith("--outfile=") else a for a in argv)


def local_to_vm2(name: str, cwd: Path, shared: Path) -> None:
    """vm2's copy of a ``local`` test's directory: empty, but for zdtm's pidfiles (its
    PID-namespace init reads ``NAME.pidns`` as it exits; the lib renames them into place from
    its working directory, so they cannot be on the share), copied over the share."""
    ask({"cmd": "run", "argv": ["mkdir", "-p", str(cwd)]})
    for f in sorted(cwd.glob(f"{name}.pid*")):
        shutil.copy2(f, shared / f.name)
        ask({"cmd": "run", "argv": ["cp", str(shared / f.name), str(cwd / f.name)]})


def one(test: dict[str, Any], mode: str, tool: str, n: int) -> None:
    name = test["name"]
    shared = RUNS / name / f"{mode}-{tool.replace(' ', '-')}"
    shared.mkdir(parents=True, exist_ok=True)
    cwd, argv = local_cwd(test, shared)
    run = ZdtmRun(STATIC, name, cwd, argv)
    Path("/proc/sys/kernel/ns_last_pid").write_text(f"{FIRST_TEST_PID + 1000 * n}\n")
    t0 = time.monotonic()
    report: dict[str, Any] = {}
    reason: str | None
    try:
        wl = run.start(Local(), timeout=STEP_TMO)
    except ZdtmError as exc:
        why = ZdtmRun.first_err(shared / f"{name}.out") if cwd != shared else ""
        emit("zdtm", {"name": name, "mode": mode, "tool": tool,
                      "reason": f"start: {name} did not start: {why}" if why else f"start: {exc}",
                      "report": report, "s": round(time.monotonic() - t0, 1)})
        return
    moved: int | None = None
    try:
        if cwd != shared:
            local_to_vm2(name, cwd, shared)
        if tool == "by hand":
            moved = by_hand(wl.pid, shared, mode, bool(test["tcp"]), n)
        else:
            moved, report = by_ferryman(wl.pid, shared, mode, bool(test["tcp"]))
        reason = ask({"cmd": "stop", "name": name, "run_dir": str(shared),
                      "pid": moved})["reason"]
    except (Failed, OSError, subprocess.SubprocessError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
    finally:
        kill_tree(wl.pid)
        if moved is not None:
            with contextlib.suppress(Failed, OSError, ValueError):
                ask({"cmd": "kill_tree", "pid": moved})
    emit("zdtm", {"name": name, "mode": mode, "tool": tool, "reason": reason,
                  "report": report, "s": round(time.monotonic() - t0, 1)})


def source() -> None:
    tests: list[dict[str, Any]] = json.loads(os.environ["TESTS"])
    modes = [m for m in os.environ.get("MODES", "precopy,hybrid").split(",") if m]
    STATE.mkdir(parents=True, exist_ok=True)
    wait_for_destination()
    n = 0
    try:
        for test in tests:
            for mode in modes:
                for tool in ("by hand", "ferryman"):
                    n += 1
                    one(test, mode, tool, n)
    finally:
        ask({"cmd": "quit"})


def main() -> int:
    setup_kernel()
    remount_runs()
    if os.environ["VM_NAME"] == "vm2":
        destination()
    else:
        source()
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
