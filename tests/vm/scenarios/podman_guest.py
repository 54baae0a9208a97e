"""Podman containers in tests/vm/scenarios/ferryman_migrations.py (``"podman": true``).

Both guests run Debian's Podman 4.3 (on runc, cgroupfs) and import the same busybox image
(/opt/ferryman/busybox-image.tar, the same bytes on both: the same image id).

A Podman scenario on vm1 starts an echo container in Podman's host network (labels
``app=echo``, ``ferryman.test=1``): busybox ``nc -l -p PORT -e cat`` beside a counter appending
1, 2, 3... to /data/log every 20 ms and a ``sort`` holding ``mib`` MiB. Its service address
(``10.99.0.X/24`` on eth1, the guests' link) is on vm1. The client is tests/support/echo.py in
a network namespace of vm1 behind a veth (10.98.0.2, vm1 routes for it; vm2 routes 10.98.0.0/24
via vm1), so it is a third party to both nodes: before the move its segments end on vm1, after
it vm1 forwards them to vm2. vm1 runs ``ferryman migrate --podman NAME --tcp-established
--move-address ADDR@eth1 ARGS`` while the client talks, then reports ``podman ps -a`` here, the
client's result, the address, and what vm2 says (``{"cmd": "podman"}``: ``podman ps -a``, the
container's log now and a second later, the address; then it removes the container).
vm2's second agent (port 7071) runs Podman with a runtime named ``runc`` that fails every
restore (``FAILING_CONF``): a migration to it rolls back.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import ferryman_migrations as fm  # tests/vm/scenarios: the shared guest helpers

IMAGE = "localhost/fm-busybox:1"
IMAGE_TAR = "/opt/ferryman/busybox-image.tar"
FAILING_CONF = Path("/tmp/failing-containers.conf")
CLIENT_NS = "fmclient"
CLIENT_NET = "10.98.0"
ECHO = fm.REPO / "tests" / "support" / "echo.py"
TALK_AFTER = 3  # s the client talks on after the migration
PS_KEYS = ("Id", "Names", "Image", "ImageID", "State", "Pid", "Labels", "Exited", "ExitCode",
           "StartedAt", "Command")


def podman(*args: str, env: dict[str, str] | None = None, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["podman", *args], capture_output=True, text=True, check=False,
                         timeout=fm.STEP_TMO, env=env)
    if check and res.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {res.stderr.strip()}")
    return res


def setup() -> None:
    """Both guests: the image, and what this Podman is."""
    image = podman("import", IMAGE_TAR, IMAGE).stdout.strip().splitlines()[-1]
    version = podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    runtime = podman("info", "--format", "{{.Host.OCIRuntime.Name}}").stdout.strip()
    fm.emit(f"{os.environ['VM_NAME']}-podman", {"version": version, "image": image,
                                                "runtime": runtime})
    if os.environ["VM_NAME"] == "vm2":
        subprocess.run(["ip", "route", "add", f"{CLIENT_NET}.0/24", "via",
                        os.environ["VM_PEER"]], check=True)
        # the failing agent's Podman: its runtime "runc" (the name a container's record
        # carries) is the wrapper that fails every restore
        FAILING_CONF.write_text(
            '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            f'[engine.runtimes]\nrunc = ["{fm.FAILING_RUNC}"]\n')
    else:
        client_namespace()


def client_namespace() -> None:
    """vm1: the client's namespace behind a veth, vm1 its router."""
    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    ip("netns", "add", CLIENT_NS)
    ip("link", "add", "fmc0", "type", "veth", "peer", "name", "fmc1")
    ip("link", "set", "fmc1", "netns", CLIENT_NS)
    ip("addr", "add", f"{CLIENT_NET}.1/24", "dev", "fmc0")
    ip("link", "set", "fmc0", "up")
    ip("-n", CLIENT_NS, "addr", "add", f"{CLIENT_NET}.2/24", "dev", "fmc1")
    ip("-n", CLIENT_NS, "link", "set", "fmc1", "up")
    ip("-n", CLIENT_NS, "link", "set", "lo", "up")
    ip("-n", CLIENT_NS, "route", "add", "default", "via", f"{CLIENT_NET}.1")
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


def failing_env() -> dict[str, str]:
    return {**fm.ENV, "CONTAINERS_CONF": str(FAILING_CONF)}


def ps(name: str) -> list[dict[str, object]]:
    """`podman ps -a` rows of ``name``, without their relative times."""
    rows = json.loads(podman("ps", "-a", "--format", "json").stdout or "[]")
    return [{k: r.get(k) for k in PS_KEYS} for r in rows if name in (r.get("Names") or [])]


def container_log(name: str) -> dict[str, object]:
    res = podman("container", "inspect", "--format", "{{.State.Pid}}", name, check=False)
    pid = res.stdout.strip() if res.returncode == 0 else "0"
    if pid in ("", "0"):
        return {"lines": 0, "sequential": False, "error": "not running"}
    return fm.log_facts(Path(f"/proc/{pid}/root/data/log"))


def has_address(address: str) -> bool:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", "eth1"], capture_output=True,
                         text=True, check=False).stdout
    return f" {address}/" in out


def container_here(name: str, address: str) -> dict[str, object]:
    """vm2: `podman ps -a` of the moved container, its log now and a second later, whether
    the service address is here; then the container goes."""
    rows = ps(name)
    first = container_log(name)
    time.sleep(1)
    answer = {"ps": rows, "log": first, "log_later": container_log(name),
              "address": has_address(address)}
    podman("rm", "--force", "--time", "0", name, check=False)
    with contextlib.suppress(OSError):
        subprocess.run(["ip", "addr", "del", f"{address}/24", "dev", "eth1"],
                       capture_output=True, check=False)
    return answer


def container_init(mib: int, port: int) -> str:
    return (f"{{ head -c {mib << 20} /dev/zero | tr '\\0' a; sleep 2147483647; }} | sort "
            f">/dev/null & nc -l -p {port} -e cat & "
            "i=0; while :; do i=$((i+1)); echo $i >> /data/log; usleep 20000; done")


def start_client(name: str, address: str, port: int
                 ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """The echo client in its namespace, talking until the stop file appears."""
    out, stop = Path(f"/tmp/{name}-client.json"), Path(f"/tmp/{name}-client.stop")
    log = Path(f"/tmp/{name}-client.log")
    with log.open("wb") as fh:
        proc = subprocess.Popen(["ip", "netns", "exec", CLIENT_NS, *fm.PY, str(ECHO), "client",
                                 "--to", f"{address}:{port}", "--interval-ms", "10",
                                 "--duration", str(fm.STEP_TMO * 4), "--out", str(out),
                                 "--stop-file", str(stop)],
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=fh)
    end = time.time() + 60
    while b"connected" not in log.read_bytes():
        if proc.poll() is not None or time.time() > end:
            raise RuntimeError(f"the echo client did not connect: {log.read_text()}")
        time.sleep(0.05)
    return proc, out, stop


def wait_for(what: str, cond: object) -> None:
    end = time.time() + fm.STEP_TMO
    while not cond():  # type: ignore[operator]
        if time.time() > end:
            raise TimeoutError(what)
        time.sleep(0.1)


def run_scenario(sc: dict[str, object], n: int) -> None:
    name = str(sc["name"])
    port = 5000 + n
    address = f"10.99.0.{10 + n}"
    peer = f"{os.environ['VM_PEER']}:{sc.get('port', fm.AGENT_PORT)}"
    subprocess.run(["ip", "addr", "add", f"{address}/24", "dev", "eth1"], check=True)
    podman("run", "--detach", "--name", name, "--label", "app=echo", "--label",
           "ferryman.test=1", "--network", "host", IMAGE, "sh", "-c",
           container_init(int(sc["mib"]), port))  # type: ignore[call-overload]
    wait_for(f"{name} writing", lambda: int(container_log(name)["lines"]) >= 10)  # type: ignore[call-overload]
    wait_for(f"{name} listening", lambda: bool(subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
        check=False).stdout.strip()))
    client, client_out, stop = start_client(name, address, port)
    time.sleep(1)
    checked: dict[str, object] = {}
    if sc.get("check"):
        chk = subprocess.run([*fm.PY, "-m", "ferryman", "check", "--podman", name, "--to", peer,
                              "--pki", fm.PKI, "--name", "vm1", "--state-dir", str(fm.STATE),
                              "--json"], env=fm.ENV, capture_output=True, text=True,
                             check=False, timeout=fm.STEP_TMO)
        checked = {"rc": chk.returncode, "stderr": chk.stderr.splitlines()[-10:]}
        with contextlib.suppress(ValueError):
            checked["verdict"] = json.loads(chk.stdout)
    before = ps(name)
    report = f"/tmp/{name}.json"
    fm.say(f"{name}: migrating Podman container {name} ({sc['mib']} MiB) {sc['args']}")
    t0 = time.monotonic()
    res = subprocess.run([*fm.PY, "-m", "ferryman", "migrate", "--podman", name, "--to", peer,
                          "--pki", fm.PKI, "--name", "vm1", "--state-dir", str(fm.STATE),
                          "--report", report, "--tcp-established",
                          "--move-address", f"{address}/24@eth1",
                          *map(str, sc["args"])],  # type: ignore[call-overload]
                         env=fm.ENV, capture_output=True, text=True, check=False,
                         timeout=fm.STEP_TMO * 4)
    wall = time.monotonic() - t0
    data: dict[str, object] = {"rc": res.returncode, "wall_s": wall,
                               "stderr": res.stderr.splitlines()[-30:], "check": checked,
                               "client_alive": client.poll() is None}
    try:
        data["report"] = json.loads(Path(report).read_text())
    except (OSError, ValueError) as exc:
        data["report"] = {"error": str(exc)}
    source: dict[str, object] = {"before": before, "after": ps(name),
                                 "address": has_address(address)}
    if res.returncode != 0:  # rolled back: it runs here again
        source["log"] = container_log(name)
        time.sleep(1)
        source["log_later"] = container_log(name)
    time.sleep(TALK_AFTER)  # it keeps talking with the moved (or resumed) service
    stop.touch()
    try:
        client.wait(fm.STEP_TMO)
        data["client"] = json.loads(client_out.read_text())
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        client.kill()
        data["client"] = {"error": f"no result: {exc}"}
    data["source"] = source
    data["destination"] = fm.ask({"cmd": "podman", "name": name, "address": address})
    podman("rm", "--force", "--time", "0", name, check=False)
    subprocess.run(["ip", "addr", "del", f"{address}/24", "dev", "eth1"], capture_output=True,
                   check=False)
    fm.say(f"{name}: rc={res.returncode} in {wall:.1f} s")
    fm.emit(name, data)
