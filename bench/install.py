"""Debian packages a scenario needs, installed by the benchmark itself when missing.

Idempotent: a package whose command is already there is not touched. ``apt-get install``
first, then ``apt-get update`` and once more (a fresh image has no package lists).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable

from bench.proc import REPO, BenchError, say


def first_line(*argv: str) -> str:
    """The first line a command prints (stdout, else stderr); "" when it cannot run."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO,
                             check=False)
        lines = (res.stdout or res.stderr).strip().splitlines()
        return lines[0] if lines else ""
    return ""


def apt_install(packages: list[str], present: Callable[[], bool]) -> bool:
    """``apt-get install -y PACKAGES`` (and ``apt-get update`` first if that is not enough)
    until ``present()``; whether it is present in the end."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *packages]
    for argvs in ([install], [["apt-get", "update", "-q"], install]):
        for argv in argvs:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(argv, capture_output=True, timeout=600, env=env, check=False)
        if present():
            return True
    return False


def _iputils_arping() -> bool:
    return shutil.which("arping") is not None and "iputils" in first_line("arping", "-V")


def ensure_arping() -> str:
    """How by hand sends its gratuitous ARP (S2, S3): iputils' ``arping``, installed with
    apt-get when missing (Debian package iputils-arping); bench/garp.py if that fails."""
    if _iputils_arping():
        return "arping"
    say("by hand announces the moved address with 'arping -U' (Debian: iputils-arping), "
        "not installed: apt-get install -y iputils-arping")
    if apt_install(["iputils-arping"], _iputils_arping):
        return "arping"
    say("could not install iputils-arping: by hand sends its gratuitous ARP with bench/garp.py")
    return "python"


REDIS_COMMANDS = ("redis-server", "redis-cli", "redis-benchmark")


def _redis_present() -> bool:
    return all(shutil.which(c) for c in REDIS_COMMANDS)


def ensure_redis() -> str:
    """redis-server, redis-cli and redis-benchmark (S2; Debian packages redis-server and
    redis-tools), installed with apt-get when missing; their version."""
    if not _redis_present():
        say("S2 needs redis-server, redis-cli and redis-benchmark (Debian: redis-server, "
            "redis-tools), not installed: apt-get install -y redis-server redis-tools")
        if not apt_install(["redis-server", "redis-tools"], _redis_present):
            missing = [c for c in REDIS_COMMANDS if not shutil.which(c)]
            raise BenchError(f"S2: could not install {', '.join(missing)} with apt-get "
                             f"(Debian packages redis-server, redis-tools)")
    return first_line("redis-server", "--version")
