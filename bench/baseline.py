"""The same migrations typed by hand, the way CRIU's documentation shows them.

Cold (https://criu.org/Disk-less_migration): ``criu page-server`` on B,
``criu dump --page-server`` on A, copy the remaining image files to B, ``criu restore -d`` on B.

Post-copy (https://criu.org/Lazy_migration): ``criu dump --lazy-pages --address A --port P``
on A (it stays running as the page server), copy the image files to B, ``criu lazy-pages
--page-server --address A --port P`` in the background on B, then ``criu restore --lazy-pages
-d`` on B.

With ``tcp=True`` (scenario S3: a TCP server whose connections and service address move
with it, https://criu.org/TCP_connection) both ``criu dump`` and ``criu restore`` get
``--tcp-established --network-lock nftables`` (the lock ferryman uses; CRIU's default
iptables lock also works here but makes ``criu restore`` log "Iptables configuration
failed"), A gives up the service address right after the dump (``ip addr del``), B takes it
before ``criu restore`` (the sockets are bound to it) and announces it afterwards with a
gratuitous ARP (``arping -U -c 2 -I DEV IP``, started in the background: it takes a second
for its two packets) so that clients stop sending to A's MAC. Without a service address
(``env.service`` None: connections on loopback, as in tests/zdtm) no address moves.

Copies use ``cp`` (same host; a real ``scp`` adds an SSH connection and the copy). Every
command runs at CRIU's default log level. With ``tls=True`` the page transfer uses CRIU's TLS
with the cluster certificates, as ferryman does; the *server* side (page server, lazy dump)
then needs ``--tls-no-cn-verify`` because CRIU checks the client's certificate against the
server's own ``--address``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.support.netns import Node
from tests.support.workloads import Workload

from bench.env import Env, Outcome
from bench.proc import PY, REPO, BenchError, err_tail, run_timed, stop, wait_ready

LAZY_SOCKET = "lazy-pages.socket"  # created by `criu lazy-pages` in its work dir
GARP = REPO / "bench" / "garp.py"
TCP_ARGS = ("--tcp-established", "--network-lock", "nftables")


def _tcp_args(tcp: bool) -> list[str]:
    return list(TCP_ARGS) if tcp else []


def _service(env: Env) -> tuple[str, str]:
    """(IP/PREFIX, IP) of the S3 service address."""
    if not env.service:
        raise BenchError("no service address configured for a --tcp-established run")
    return env.service, env.service.split("/", 1)[0]


def _addr(node: Node, verb: str, env: Env, steps: dict[str, float]) -> None:
    """``ip addr add|del SERVICE dev DEV`` in ``node``, timed into ``steps``; nothing when no
    service address moves (connections on loopback, as in CRIU's zdtm tests)."""
    if env.service is None:
        return
    cidr, _ = _service(env)
    res = run_timed(node.argv("ip", "addr", verb, cidr, "dev", env.dev), env.timeout)
    res.check(f"ip addr {verb} {cidr} on {node.name}")
    steps[f"addr_{verb}_ms"] = res.ms


def _announce(env: Env, b: Node, steps: dict[str, float]
              ) -> subprocess.Popen[bytes] | None:
    """The gratuitous ARP from B: ``arping -U`` in the background, or bench/garp.py; nothing
    when no service address moves."""
    if env.service is None:
        return None
    _, ip = _service(env)
    t0 = time.monotonic()
    if env.garp == "arping":
        proc = b.popen("arping", "-U", "-c", "2", "-I", env.dev, ip, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        steps["garp_start_ms"] = (time.monotonic() - t0) * 1000
        return proc
    run_timed(b.argv(PY, str(GARP), ip, env.dev), env.timeout).check("bench/garp.py")
    steps["garp_start_ms"] = (time.monotonic() - t0) * 1000
    return None


def _announced(proc: subprocess.Popen[bytes] | None, timeout: float) -> dict[str, float]:
    """Wait for a background arping (not counted in the total) and record how it ended."""
    if proc is None:
        return {}
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError("arping -U did not finish") from exc
    if proc.returncode not in (0, 1):  # iputils: 1 = no reply, normal for unsolicited ARP
        raise BenchError(f"arping -U exited with {proc.returncode}")
    return {"arping_rc": float(proc.returncode)}


def _image_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file() and p.suffix != ".log")


def _criu_stats(path: Path) -> dict[str, int]:
    from ferryman.criu.stats import read_stats

    try:
        return read_stats(path)
    except Exception:  # decoding is a nice-to-have; the run itself succeeded
        return {}


def _tls(env: Env, node: str, *, tls: bool, server: bool) -> list[str]:
    if not tls:
        return []
    p = env.pki
    args = ["--tls", "--tls-cacert", str(p / "ca.pem"), "--tls-cert", str(p / f"{node}.pem"),
            "--tls-key", str(p / f"{node}.key")]
    # The server checks the client's certificate against its own --address otherwise.
    return [*args, "--tls-no-cn-verify"] if server else args


def _copy_images(src: Path, dst: Path, timeout: float) -> tuple[float, int, int]:
    """``cp`` every image file (not the logs) from ``src`` to ``dst``: (ms, files, bytes)."""
    paths = sorted(p for p in src.iterdir() if p.is_file() and p.suffix != ".log")
    if not paths:
        raise BenchError(f"no image files in {src}")
    size = sum(p.stat().st_size for p in paths)
    copy = run_timed(["cp", "-p", *map(str, paths), str(dst)], timeout).check("cp")
    return copy.ms, len(paths), size


def _restored_pid(pidfile: Path, restored: list[int]) -> None:
    text = pidfile.read_text().strip() if pidfile.exists() else ""
    if text:
        restored.append(int(text))


def cold(env: Env, wl: Workload, run_dir: Path, restored: list[int], *, tls: bool = False,
         tcp: bool = False) -> Outcome:
    """Cold by hand. total = dump start → ``criu restore -d`` done (tcp: and the gratuitous
    ARP started)."""
    a, b = env.topo["a"], env.topo["b"]
    steps: dict[str, float] = {}
    arping: subprocess.Popen[bytes] | None = None
    dir_a, dir_b = run_dir / "images-a", run_dir / "images-b"
    dir_a.mkdir()
    dir_b.mkdir()
    port = next(env.ports)
    server = b.popen(env.criu, "page-server", "--images-dir", str(dir_b), "--address", b.ip,
                     "--port", str(port), *_tls(env, "b", tls=tls, server=True),
                     stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        b.wait_listening(port, timeout=min(env.timeout, 30), proc=server)
        t0 = time.monotonic()
        wall0 = time.time()  # the same instant on the wall clock (S2's windows)
        dump = run_timed(a.argv(env.criu, "dump", "-t", str(wl.pid), "--images-dir", str(dir_a),
                                "--page-server", "--address", b.ip, "--port", str(port),
                                *_tls(env, "a", tls=tls, server=False), *_tcp_args(tcp)),
                         env.timeout).check("criu dump", dir_a / "dump.log")
        if tcp:  # the tree is gone from A, its connections locked: give up the address
            _addr(a, "del", env, steps)
        try:
            server.wait(env.timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError("criu page-server did not exit after the dump") from exc
        if server.returncode != 0:
            raise BenchError(f"criu page-server exited with {server.returncode} "
                             f"(log {dir_b / 'page-server.log'})")
        copy_ms, n_files, copied = _copy_images(dir_a, dir_b, env.timeout)
        moved = _image_bytes(dir_b)
        pidfile = run_dir / "restored.pid"
        if tcp:  # the restored sockets are bound to it
            _addr(b, "add", env, steps)
        restore = run_timed(b.argv(env.criu, "restore", "--images-dir", str(dir_b), "-d",
                                   "--pidfile", str(pidfile), *_tcp_args(tcp)), env.timeout)
        _restored_pid(pidfile, restored)
        restore.check("criu restore", dir_b / "restore.log")
        if not restored:
            raise BenchError("criu restore wrote no pidfile")
        if tcp:
            arping = _announce(env, b, steps)
        total_ms = (time.monotonic() - t0) * 1000
        steps.update(_announced(arping, env.timeout))
        return Outcome(
            total_ms=total_ms,
            bytes_moved=moved,
            started_wall=wall0,
            details={
                "dump_ms": dump.ms,
                "copy_ms": copy_ms,
                "restore_ms": restore.ms,
                "copied_files": n_files,
                "copied_bytes": copied,  # cp on this host; scp would send them A → B
                "criu_dump": _criu_stats(dir_a / "stats-dump"),
                "criu_restore": _criu_stats(dir_b / "stats-restore"),
                **steps,
            })
    finally:
        if arping is not None:
            stop(arping)
        stop(server)


def _listening(pid: int, port: int) -> bool:
    """Whether ``pid``'s network namespace has a TCP socket listening on ``port``.

    A plain file read (no subprocess), so it can be polled every few ms: the by-hand
    baseline gets the best reaction a script could have, not a human's.
    """
    hexport = f":{port:04X}"
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 3 and cols[1].endswith(hexport) and cols[3] == "0A":
                return True
    return False


def wait_tail(procs: dict[str, tuple[subprocess.Popen[bytes], Path]], deadline: float
              ) -> dict[str, float]:
    """The post-copy tail: the lazy-pages daemon pulls every remaining page; the source dump
    exits once it has served the last one (the source stays frozen until then). Polls every
    2 ms until every one of ``procs`` (name: process, its log) exited; when each did
    (monotonic). BenchError on a timeout or a non-zero exit."""
    ends: dict[str, float] = {}
    while len(ends) < len(procs):
        for name, (proc, _) in procs.items():
            if name not in ends and proc.poll() is not None:
                ends[name] = time.monotonic()
        if time.monotonic() > deadline:
            raise BenchError(f"post-copy tail not done in time (finished: {sorted(ends)})")
        time.sleep(0.002)
    for name, (proc, err) in procs.items():
        if proc.returncode != 0:
            raise BenchError(f"{name} exited with {proc.returncode}: {err_tail(err)} "
                             f"(log {err})")
    return ends


def lazy(env: Env, wl: Workload, run_dir: Path, restored: list[int], *, tls: bool = False,
         tcp: bool = False) -> Outcome:
    """Post-copy by hand; returns once every page has been served (the source dump exits).

    total = dump start → source ``criu dump`` exits (all pages served);
    memory_complete = ``criu restore -d`` done (workload running on B; tcp: and the
    gratuitous ARP started) → that exit.
    """
    a, b = env.topo["a"], env.topo["b"]
    steps: dict[str, float] = {}
    arping: subprocess.Popen[bytes] | None = None
    dir_a, dir_b = run_dir / "images-a", run_dir / "images-b"
    dir_a.mkdir()
    dir_b.mkdir()
    port = next(env.ports)
    dump_err, lazy_err = run_dir / "dump.stderr", run_dir / "lazy-pages.stderr"
    lazyd: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    wall0 = time.time()  # the same instant on the wall clock (S2's windows)
    with dump_err.open("wb") as errf:
        dump = a.popen(env.criu, "dump", "-t", str(wl.pid), "--images-dir", str(dir_a),
                       "--lazy-pages", "--address", a.ip, "--port", str(port),
                       *_tls(env, "a", tls=tls, server=True), *_tcp_args(tcp),
                       stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
    try:
        # nsenter execs criu: dump.pid is criu, in A's network namespace.
        wait_ready("criu dump --lazy-pages", lambda: _listening(dump.pid, port), dump,
                  dump_err, env.timeout)
        t_serving = time.monotonic()
        if tcp:  # dumped (frozen, connections locked): give up the address
            _addr(a, "del", env, steps)
        copy_ms, n_files, copied = _copy_images(dir_a, dir_b, env.timeout)
        image_bytes = _image_bytes(dir_b)
        t_lazy = time.monotonic()
        with lazy_err.open("wb") as errf:
            lazyd = b.popen(env.criu, "lazy-pages", "--images-dir", str(dir_b), "--page-server",
                            "--address", a.ip, "--port", str(port),
                            *_tls(env, "b", tls=tls, server=False),
                            stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        sock = dir_b / LAZY_SOCKET
        wait_ready("criu lazy-pages", sock.exists, lazyd, lazy_err, min(env.timeout, 60))
        if tcp:  # the restored sockets are bound to it
            _addr(b, "add", env, steps)
        t_restore = time.monotonic()
        pidfile = run_dir / "restored.pid"
        restore = run_timed(b.argv(env.criu, "restore", "--images-dir", str(dir_b),
                                   "--lazy-pages", "-d", "--pidfile", str(pidfile),
                                   *_tcp_args(tcp)), env.timeout)
        _restored_pid(pidfile, restored)
        restore.check("criu restore --lazy-pages")
        if not restored:
            raise BenchError("criu restore wrote no pidfile")
        if tcp:
            arping = _announce(env, b, steps)
        t_resumed = time.monotonic()
        ends = wait_tail({"criu dump --lazy-pages": (dump, dump_err),
                          "criu lazy-pages": (lazyd, lazy_err)}, t_resumed + env.timeout)
        ms = 1000.0
        return Outcome(
            total_ms=(ends["criu dump --lazy-pages"] - t0) * ms,
            bytes_moved=None,  # the pages' count is not logged at CRIU's default level
            started_wall=wall0,
            memory_complete_ms=(ends["criu dump --lazy-pages"] - t_resumed) * ms,
            details={
                "dump_ms": (t_serving - t0) * ms,  # freeze + dump until the page server listens
                "copy_ms": copy_ms,
                "lazy_start_ms": (t_restore - t_lazy) * ms,
                "restore_ms": restore.ms,
                "resumed_ms": (t_resumed - t0) * ms,  # dump start → running on B
                "lazy_pages_exit_ms": (ends["criu lazy-pages"] - t_resumed) * ms,
                "image_bytes": image_bytes,
                "copied_files": n_files,
                "copied_bytes": copied,  # cp on this host; scp would send them A → B
                **steps,
                **_announced(arping, env.timeout),
            })
    finally:
        if arping is not None:
            stop(arping)
        if lazyd is not None:
            stop(lazyd)
        stop(dump)
