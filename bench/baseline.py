"""The same migration typed by hand, the way CRIU's documentation shows it.

Cold: ``criu page-server`` on B, ``criu dump --page-server`` on A, copy the remaining image
files to B (``cp``: same host; a real ``scp`` adds an SSH connection and copy), then
``criu restore -d`` on B. Plain TCP page server (no TLS; ``--by-hand-tls`` adds CRIU's TLS
with the cluster certificates, as ferryman uses it), CRIU's default log level.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.support.workloads import Workload

from bench.env import Env, Outcome
from bench.proc import BenchError, run_timed, stop


def _image_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file() and p.suffix != ".log")


def _criu_stats(path: Path) -> dict[str, int]:
    from ferryman.criu.stats import read_stats

    try:
        return read_stats(path)
    except Exception:  # decoding is a nice-to-have; the run itself succeeded
        return {}


def _tls(env: Env, node: str, server: bool) -> list[str]:
    if not env.hand_tls:
        return []
    p = env.pki
    args = ["--tls", "--tls-cacert", str(p / "ca.pem"), "--tls-cert", str(p / f"{node}.pem"),
            "--tls-key", str(p / f"{node}.key")]
    # The page server checks the client's certificate against its own --address otherwise.
    return [*args, "--tls-no-cn-verify"] if server else args


def cold(env: Env, wl: Workload, run_dir: Path, restored: list[int]) -> Outcome:
    a, b = env.topo["a"], env.topo["b"]
    dir_a, dir_b = run_dir / "images-a", run_dir / "images-b"
    dir_a.mkdir()
    dir_b.mkdir()
    port = next(env.ports)
    server = b.popen(env.criu, "page-server", "--images-dir", str(dir_b), "--address", b.ip,
                     "--port", str(port), *_tls(env, "b", server=True),
                     stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        b.wait_listening(port, timeout=min(env.timeout, 30), proc=server)
        t0 = time.monotonic()
        dump = run_timed(a.argv(env.criu, "dump", "-t", str(wl.pid), "--images-dir", str(dir_a),
                                "--page-server", "--address", b.ip, "--port", str(port),
                                *_tls(env, "a", server=False)),
                         env.timeout).check("criu dump", dir_a / "dump.log")
        try:
            server.wait(env.timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError("criu page-server did not exit after the dump") from exc
        if server.returncode != 0:
            raise BenchError(f"criu page-server exited with {server.returncode} "
                             f"(log {dir_b / 'page-server.log'})")
        files = sorted(str(p) for p in dir_a.iterdir() if p.suffix != ".log")
        copy = run_timed(["cp", "-p", *files, str(dir_b)], env.timeout).check("cp")
        moved = _image_bytes(dir_b)
        pidfile = run_dir / "restored.pid"
        restore = run_timed(b.argv(env.criu, "restore", "--images-dir", str(dir_b), "-d",
                                   "--pidfile", str(pidfile)), env.timeout)
        total_ms = (time.monotonic() - t0) * 1000
        if pidfile.exists() and pidfile.read_text().strip():
            restored.append(int(pidfile.read_text().strip()))
        restore.check("criu restore", dir_b / "restore.log")
        if not restored:
            raise BenchError("criu restore wrote no pidfile")
        return Outcome(
            total_ms=total_ms,
            bytes_moved=moved,
            details={
                "dump_ms": dump.ms,
                "copy_ms": copy.ms,
                "restore_ms": restore.ms,
                "copied_files": len(files),
                "criu_dump": _criu_stats(dir_a / "stats-dump"),
                "criu_restore": _criu_stats(dir_b / "stats-restore"),
            })
    finally:
        stop(server)
