"""CRIU's facts (version, FEATURE_CHECK, CPUINFO_DUMP, ``check --feature`` probes) kept on disk.

Every ``ferryman migrate`` and ``ferryman check`` is a new process, and asking CRIU costs
three swrk runs (~50-110 ms here, on the critical path before the freeze) plus the probes.
The answers depend only on the criu binary, the running kernel and the CPU, so they are
kept in ``STATE_DIR/criu-facts.json`` under a key made of exactly those: the binary's
resolved path, device, inode, size and mtime; the boot id (a new boot may bring a new kernel,
new modules, a new CPU); the kernel release; ferryman's version, the cache format and the
features asked. Any difference, an unreadable or malformed file: asked again, and rewritten.
``MAX_AGE_S`` bounds the reuse further (a module loaded or a sysctl changed since). Things
that can change while the node runs are never cached: the lazy-pages pipe size, free memory
and disk (:mod:`ferryman.agent.hello`).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ferryman import __version__
from ferryman.host import procfs

FILE_NAME: Final = "criu-facts.json"
FORMAT: Final = 1
MAX_AGE_S: Final = 3600.0


def cache_key(binary: str, asked: Sequence[str], *, boot_id: str, release: str,
              which: Any = None) -> dict[str, Any]:
    """What the facts of ``binary`` depend on (``which``: shutil.which, for tests)."""
    import shutil

    found = (which or shutil.which)(binary)
    if found is None:
        raise FileNotFoundError(binary)
    path = str(Path(found).resolve())
    st = Path(path).stat()
    return {"format": FORMAT, "ferryman": __version__, "binary": path, "dev": st.st_dev,
            "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "boot_id": boot_id, "release": release, "asked": sorted(asked)}


def host_key(binary: str, asked: Sequence[str]) -> dict[str, Any] | None:
    """:func:`cache_key` on this host, or None when the binary cannot be found (no cache)."""
    try:
        return cache_key(binary, asked, boot_id=procfs.read_sysctl("kernel.random.boot_id"),
                         release=os.uname().release)
    except OSError:
        return None


def encode(key: Mapping[str, Any], version: tuple[int, int, int], features: Mapping[str, bool],
           cpuinfo: bytes, probes: Mapping[str, bool], *, now: float) -> str:
    return json.dumps({"key": dict(key), "at": now, "version": list(version),
                       "features": dict(features), "probes": dict(probes),
                       "cpuinfo": base64.b64encode(cpuinfo).decode()})


def decode(text: str, key: Mapping[str, Any], now: float, max_age_s: float = MAX_AGE_S
           ) -> tuple[tuple[int, int, int], dict[str, bool], bytes, dict[str, bool]] | None:
    """(version, features, cpuinfo, probes) when ``text`` holds the facts for ``key``, no
    older than ``max_age_s``; None otherwise (stale, other binary or boot, malformed)."""
    try:
        d = json.loads(text)
        if d["key"] != dict(key) or not 0 <= now - float(d["at"]) <= max_age_s:
            return None
        major, minor, sub = (int(x) for x in d["version"])
        features = {str(k): v for k, v in d["features"].items() if isinstance(v, bool)}
        probes = {str(k): v for k, v in d["probes"].items() if isinstance(v, bool)}
        if len(features) != len(d["features"]) or len(probes) != len(d["probes"]):
            return None
        return (major, minor, sub), features, base64.b64decode(d["cpuinfo"],
                                                               validate=True), probes
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# What this process saved last, once remember_in_process() was called: a process the agent's
# launcher forks (cli/launcher.py) inherits the facts the launcher asked, whatever state
# directory its command names.
_remembered: list[str] = []
_remembering: list[bool] = []


def remember_in_process() -> None:
    """From now on :func:`save` keeps its text in this process too, and :func:`load` falls
    back to it (the launcher's, for the processes it forks)."""
    _remembering[:] = [True]


def load(state_dir: Path, key: Mapping[str, Any]
         ) -> tuple[tuple[int, int, int], dict[str, bool], bytes, dict[str, bool]] | None:
    """The facts for ``key`` from ``state_dir``'s file, else from what this process (or
    the launcher it was forked from) saved; None when neither holds them (module doc)."""
    now = time.time()
    try:
        found = decode((state_dir / FILE_NAME).read_text(), key, now)
    except OSError:
        found = None
    if found is None and _remembered:
        found = decode(_remembered[0], key, now)
    return found


def save(state_dir: Path, text: str) -> None:
    """Write atomically (0600); a failure only means asking CRIU again next time. The
    text is remembered in this process as well when asked to (:func:`remember_in_process`)."""
    if _remembering:
        _remembered[:] = [text]
    tmp = state_dir / f".{FILE_NAME}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        tmp.replace(state_dir / FILE_NAME)
    except OSError:
        tmp.unlink(missing_ok=True)
