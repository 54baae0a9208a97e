"""The same migrations typed by hand, the way CRIU's documentation shows them.

Cold (https://criu.org/Disk-less_migration): ``criu page-server`` on B,
``criu dump --page-server`` on A, copy the remaining image files to B, ``criu restore -d`` on B.

Post-copy (https://criu.org/Lazy_migration): ``criu dump --lazy-pages --address A --port P``
on A (it stays running as the page server), copy the image files to B, ``criu lazy-pages
--page-server --address A --port P`` in the background on B, then ``criu restore --lazy-pages
-d`` on B.

Copies use ``cp`` (same host; a real ``scp`` adds an SSH connection and the copy). Every
command runs at CRIU's default log level. With ``tls=True`` the page transfer uses CRIU's TLS
with the cluster certificates, as ferryman does; the *server* side (page server, lazy dump)
then needs ``--tls-no-cn-verify`` because CRIU checks the client's certificate against the
server's own ``--address``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.workloads import Workload

from bench.env import Env, Outcome
from bench.proc import BenchError, run_timed, stop

LAZY_SOCKET = "lazy-pages.socket"  # created by `criu lazy-pages` in its work dir


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


def _copy_images(src: Path, dst: Path, timeout: float) -> tuple[float, int]:
    """``cp`` every image file (not the logs) from ``src`` to ``dst``: (ms, file count)."""
    files = sorted(str(p) for p in src.iterdir() if p.is_file() and p.suffix != ".log")
    if not files:
        raise BenchError(f"no image files in {src}")
    copy = run_timed(["cp", "-p", *files, str(dst)], timeout).check("cp")
    return copy.ms, len(files)


def _restored_pid(pidfile: Path, restored: list[int]) -> None:
    text = pidfile.read_text().strip() if pidfile.exists() else ""
    if text:
        restored.append(int(text))


def _err_tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or [""])[-1]


def cold(env: Env, wl: Workload, run_dir: Path, restored: list[int], *, tls: bool = False
         ) -> Outcome:
    a, b = env.topo["a"], env.topo["b"]
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
        dump = run_timed(a.argv(env.criu, "dump", "-t", str(wl.pid), "--images-dir", str(dir_a),
                                "--page-server", "--address", b.ip, "--port", str(port),
                                *_tls(env, "a", tls=tls, server=False)),
                         env.timeout).check("criu dump", dir_a / "dump.log")
        try:
            server.wait(env.timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError("criu page-server did not exit after the dump") from exc
        if server.returncode != 0:
            raise BenchError(f"criu page-server exited with {server.returncode} "
                             f"(log {dir_b / 'page-server.log'})")
        copy_ms, n_files = _copy_images(dir_a, dir_b, env.timeout)
        moved = _image_bytes(dir_b)
        pidfile = run_dir / "restored.pid"
        restore = run_timed(b.argv(env.criu, "restore", "--images-dir", str(dir_b), "-d",
                                   "--pidfile", str(pidfile)), env.timeout)
        total_ms = (time.monotonic() - t0) * 1000
        _restored_pid(pidfile, restored)
        restore.check("criu restore", dir_b / "restore.log")
        if not restored:
            raise BenchError("criu restore wrote no pidfile")
        return Outcome(
            total_ms=total_ms,
            bytes_moved=moved,
            details={
                "dump_ms": dump.ms,
                "copy_ms": copy_ms,
                "restore_ms": restore.ms,
                "copied_files": n_files,
                "criu_dump": _criu_stats(dir_a / "stats-dump"),
                "criu_restore": _criu_stats(dir_b / "stats-restore"),
            })
    finally:
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


def _wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], err: Path,
              timeout: float) -> None:
    """Poll ``ready()`` every 2 ms until true; fail if ``proc`` exits first or on timeout."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise BenchError(f"{what}: criu exited with {proc.returncode} before it was ready: "
                             f"{_err_tail(err)} (log {err})")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not ready after {timeout:.0f} s (log {err})")
        time.sleep(0.002)


def lazy(env: Env, wl: Workload, run_dir: Path, restored: list[int], *, tls: bool = False
         ) -> Outcome:
    """Post-copy by hand; returns once every page has been served (the source dump exits).

    total = dump start → source ``criu dump`` exits (all pages served);
    memory_complete = ``criu restore -d`` done (workload running on B) → that exit.
    """
    a, b = env.topo["a"], env.topo["b"]
    dir_a, dir_b = run_dir / "images-a", run_dir / "images-b"
    dir_a.mkdir()
    dir_b.mkdir()
    port = next(env.ports)
    dump_err, lazy_err = run_dir / "dump.stderr", run_dir / "lazy-pages.stderr"
    lazyd: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    with dump_err.open("wb") as errf:
        dump = a.popen(env.criu, "dump", "-t", str(wl.pid), "--images-dir", str(dir_a),
                       "--lazy-pages", "--address", a.ip, "--port", str(port),
                       *_tls(env, "a", tls=tls, server=True),
                       stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
    try:
        # nsenter execs criu: dump.pid is criu, in A's network namespace.
        _wait_for("criu dump --lazy-pages", lambda: _listening(dump.pid, port), dump,
                  dump_err, env.timeout)
        t_serving = time.monotonic()
        copy_ms, n_files = _copy_images(dir_a, dir_b, env.timeout)
        image_bytes = _image_bytes(dir_b)
        t_lazy = time.monotonic()
        with lazy_err.open("wb") as errf:
            lazyd = b.popen(env.criu, "lazy-pages", "--images-dir", str(dir_b), "--page-server",
                            "--address", a.ip, "--port", str(port),
                            *_tls(env, "b", tls=tls, server=False),
                            stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        sock = dir_b / LAZY_SOCKET
        _wait_for("criu lazy-pages", sock.exists, lazyd, lazy_err, min(env.timeout, 60))
        t_restore = time.monotonic()
        pidfile = run_dir / "restored.pid"
        restore = run_timed(b.argv(env.criu, "restore", "--images-dir", str(dir_b),
                                   "--lazy-pages", "-d", "--pidfile", str(pidfile)),
                            env.timeout)
        t_resumed = time.monotonic()
        _restored_pid(pidfile, restored)
        restore.check("criu restore --lazy-pages")
        if not restored:
            raise BenchError("criu restore wrote no pidfile")
        # The post-copy tail: the lazy-pages daemon pulls every remaining page; the source
        # dump exits once it has served the last one (the source stays frozen until then).
        ends: dict[str, float] = {}
        procs = {"dump": dump, "lazy_pages": lazyd}
        deadline = t_resumed + env.timeout
        while len(ends) < len(procs):
            for name, proc in procs.items():
                if name not in ends and proc.poll() is not None:
                    ends[name] = time.monotonic()
            if time.monotonic() > deadline:
                raise BenchError(f"post-copy tail not done after {env.timeout:.0f} s "
                                 f"(finished: {sorted(ends)})")
            time.sleep(0.002)
        if dump.returncode != 0:
            raise BenchError(f"criu dump --lazy-pages exited with {dump.returncode}: "
                             f"{_err_tail(dump_err)} (log {dump_err})")
        if lazyd.returncode != 0:
            raise BenchError(f"criu lazy-pages exited with {lazyd.returncode}: "
                             f"{_err_tail(lazy_err)} (log {lazy_err})")
        ms = 1000.0
        return Outcome(
            total_ms=(ends["dump"] - t0) * ms,
            bytes_moved=None,  # the pages' count is not logged at CRIU's default level
            memory_complete_ms=(ends["dump"] - t_resumed) * ms,
            details={
                "dump_ms": (t_serving - t0) * ms,  # freeze + dump until the page server listens
                "copy_ms": copy_ms,
                "lazy_start_ms": (t_restore - t_lazy) * ms,
                "restore_ms": restore.ms,
                "resumed_ms": (t_resumed - t0) * ms,  # dump start → running on B
                "lazy_pages_exit_ms": (ends["lazy_pages"] - t_resumed) * ms,
                "image_bytes": image_bytes,
                "copied_files": n_files,
            })
    finally:
        if lazyd is not None:
            stop(lazyd)
        stop(dump)
