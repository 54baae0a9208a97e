"""A runc container's migration typed by hand, the way runc's and CRIU's documentation show it.

Both modes first copy the bundle to B while the container runs (``rsync -a``), and again
with ``--delete`` once it is checkpointed (only what changed: the two-pass copy a careful
human would type, and what ferryman automates). Copies are ``rsync -a`` run in B that reads
A's files through ``/proc/PID/root`` (one host; between machines it would be ``rsync -a
DIR B:DIR`` over SSH, adding a connection).

Cold (runc-checkpoint(8), runc-restore(8)): ``runc checkpoint --tcp-established
--image-path DIR_A --work-path DIR_A ID`` on A; ``ip addr del`` of the service address on A;
rsync of the images and the bundle to B; ``ip addr add`` on B; ``runc restore --detach
--tcp-established --image-path DIR_B --work-path DIR_B --bundle BUNDLE ID`` on B; ``arping
-U`` from B in the background. total = first rsync → restore returned and arping started.

Post-copy (https://criu.org/Lazy_migration with runc's flags): ``runc checkpoint
--lazy-pages --page-server IP_A:PORT --status-fd FD …`` on A, in the background; once CRIU
writes ``\\0`` to the status fd (the dump is done and serves pages) the address leaves A and
the images and bundle are copied; ``criu lazy-pages --page-server --address IP_A --port
PORT --images-dir DIR_B --work-dir DIR_B`` on B in the background (waited for until its
``lazy-pages.socket`` exists); ``ip addr add`` on B; ``runc restore --detach --lazy-pages
--tcp-established …`` on B; ``arping -U``. memory complete = restore returned → ``runc
checkpoint`` exited (every page served); total = first rsync → that exit.

runc 1.1.5 has no flag for CRIU's TLS or network lock: pages travel as plain TCP and CRIU's
default iptables lock is used (runc's RPC leaves it unset), so there is no by-hand-TLS
variant here. ``runc restore`` gets ``--pid-file`` so the benchmark knows the restored PID;
its stdio (which the container inherits) go to a log file.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.baseline import (
    LAZY_SOCKET,
    _addr,
    _announce,
    _announced,
    _image_bytes,
    wait_tail,
)
from bench.env import Env, Outcome
from bench.proc import BenchError, Timed, run_timed, stop, wait_ready

if TYPE_CHECKING:
    from bench.box import Box


def _rsync(env: Env, box: Box, src: Path, dst: Path, *, delete: bool = False) -> Timed:
    """``rsync -a [--delete] SRC/ DST/`` on B, ``src`` read from A."""
    argv = box.on_b("rsync", "-a", *(["--delete"] if delete else []), f"{box.from_a(src)}/",
                    f"{dst}/")
    return run_timed(argv, env.timeout).check(f"rsync {src}")


def _copy(env: Env, box: Box, dir_a: Path, dir_b: Path) -> dict[str, float]:
    """The images, then what changed in the bundle since the first copy."""
    images = _rsync(env, box, dir_a, dir_b)
    bundle = _rsync(env, box, box.bundle, box.bundle, delete=True)
    return {"copy_images_ms": images.ms, "copy_bundle_ms": bundle.ms,
            "copy_ms": images.ms + bundle.ms}


def _restore(env: Env, box: Box, run_dir: Path, dir_b: Path, restored: list[int], *,
             lazy: bool) -> Timed:
    pidfile = run_dir / "restored.pid"
    res = run_timed(box.on_b("runc", "--root", str(box.root_b), "restore", "--detach",
                             "--tcp-established", *(["--lazy-pages"] if lazy else []),
                             "--image-path", str(dir_b), "--work-path", str(dir_b),
                             "--bundle", str(box.bundle), "--pid-file", str(pidfile), box.id),
                    env.timeout, output=run_dir / "runc-restore.out")
    text = pidfile.read_text().strip() if pidfile.exists() else ""
    if text:
        restored.append(int(text))
    res.check(f"runc restore{' --lazy-pages' if lazy else ''}", dir_b / "restore.log")
    if not text:
        raise BenchError("runc restore wrote no pid file")
    return res


def _dirs(run_dir: Path) -> tuple[Path, Path]:
    dir_a, dir_b = run_dir / "images-a", run_dir / "images-b"
    dir_a.mkdir()
    dir_b.mkdir()
    return dir_a, dir_b


def cold(env: Env, box: Box, run_dir: Path, restored: list[int]) -> Outcome:
    a, b = env.topo["a"], env.topo["b"]
    steps: dict[str, float] = {}
    dir_a, dir_b = _dirs(run_dir)
    arping: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    try:
        presync = _rsync(env, box, box.bundle, box.bundle)
        dump = run_timed(a.argv("runc", "--root", str(box.root_a), "checkpoint",
                                "--tcp-established", "--image-path", str(dir_a),
                                "--work-path", str(dir_a), box.id), env.timeout
                         ).check("runc checkpoint", dir_a / "dump.log")
        _addr(a, "del", env, steps)
        steps.update(_copy(env, box, dir_a, dir_b))
        _addr(b, "add", env, steps)
        restore = _restore(env, box, run_dir, dir_b, restored, lazy=False)
        arping = _announce(env, b, steps)
        total_ms = (time.monotonic() - t0) * 1000
        steps.update(_announced(arping, env.timeout))
        return Outcome(total_ms=total_ms, bytes_moved=_image_bytes(dir_b), details={
            "presync_ms": presync.ms, "dump_ms": dump.ms, "restore_ms": restore.ms, **steps})
    finally:
        if arping is not None:
            stop(arping)


def _wait_status(fd: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """runc's ``--status-fd``: CRIU writes one NUL byte once the lazy dump serves pages."""
    ready, _, _ = select.select([fd], [], [], timeout)
    got = os.read(fd, 1) if ready else b""
    if got != b"\0":
        stop(proc)
        raise BenchError(f"runc checkpoint --lazy-pages: no status byte ({got!r}, exit "
                         f"{proc.returncode}); log {log}")


def lazy(env: Env, box: Box, run_dir: Path, restored: list[int]) -> Outcome:
    a, b = env.topo["a"], env.topo["b"]
    steps: dict[str, float] = {}
    dir_a, dir_b = _dirs(run_dir)
    port = next(env.ports)
    dump_err, lazy_err = run_dir / "checkpoint.out", run_dir / "lazy-pages.out"
    dump: subprocess.Popen[bytes] | None = None
    lazyd: subprocess.Popen[bytes] | None = None
    arping: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()
    try:
        presync = _rsync(env, box, box.bundle, box.bundle)
        t_dump = time.monotonic()
        status_r, status_w = os.pipe()
        try:
            with dump_err.open("wb") as errf:
                dump = subprocess.Popen(
                    a.argv("runc", "--root", str(box.root_a), "checkpoint",
                           "--tcp-established", "--lazy-pages", "--page-server",
                           f"{a.ip}:{port}", "--status-fd", str(status_w), "--image-path",
                           str(dir_a), "--work-path", str(dir_a), box.id),
                    pass_fds=(status_w,), stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
            os.close(status_w)
            status_w = -1
            _wait_status(status_r, dump, dir_a / "dump.log", env.timeout)
        finally:
            os.close(status_r)
            if status_w >= 0:
                os.close(status_w)
        t_serving = time.monotonic()
        _addr(a, "del", env, steps)
        steps.update(_copy(env, box, dir_a, dir_b))
        t_lazy = time.monotonic()
        with lazy_err.open("wb") as errf:
            lazyd = subprocess.Popen(
                box.on_b(env.criu, "lazy-pages", "--page-server", "--address", a.ip, "--port",
                         str(port), "--images-dir", str(dir_b), "--work-dir", str(dir_b)),
                stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
        wait_ready("criu lazy-pages", (dir_b / LAZY_SOCKET).exists, lazyd, lazy_err,
                  min(env.timeout, 60))
        t_started = time.monotonic()
        _addr(b, "add", env, steps)
        restore = _restore(env, box, run_dir, dir_b, restored, lazy=True)
        arping = _announce(env, b, steps)
        t_resumed = time.monotonic()
        ends = wait_tail({"runc checkpoint --lazy-pages": (dump, dir_a / "dump.log"),
                          "criu lazy-pages": (lazyd, lazy_err)}, t_resumed + env.timeout)
        done = ends["runc checkpoint --lazy-pages"]
        ms = 1000.0
        return Outcome(
            total_ms=(done - t0) * ms, bytes_moved=None,
            memory_complete_ms=(done - t_resumed) * ms,
            details={
                "presync_ms": presync.ms,
                "dump_ms": (t_serving - t_dump) * ms,  # checkpoint until the status byte
                "lazy_start_ms": (t_started - t_lazy) * ms,
                "restore_ms": restore.ms,
                "resumed_ms": (t_resumed - t0) * ms,
                "lazy_pages_exit_ms": (ends["criu lazy-pages"] - t_resumed) * ms,
                "image_bytes": _image_bytes(dir_b),
                **steps, **_announced(arping, env.timeout)})
    finally:
        for proc in (arping, lazyd, dump):
            if proc is not None:
                stop(proc)

