"""The page transfer's bandwidth cap (``migrate --max-bandwidth``), applied by CRIU itself.

Our CRIU build (``scripts/criu-patches/tls-bulk-pace.patch``) sets ``SO_MAX_PACING_RATE`` to
``FERRYMAN_PAGE_RATE`` bytes/s on every page socket it opens or accepts: a dump's and a
pre-dump's connection to the page server, and a lazy dump's served connection (post-copy's
pages, background push included). The kernel's TCP pacing then holds the rate on the wire.
Only the source's criu gets the variable: pages flow from it in every mode.

The same build (``scripts/criu-patches/usertimeout-page-sockets.patch``) bounds every stall
of a page connection criu opens at ``FERRYMAN_PAGE_TIMEOUT_MS`` (TCP_USER_TIMEOUT, and
keepalive probes every second): the connect, data the peer does not take, a wait for its
answer. Every criu that connects to a page server gets it: the source's dumps and pre-dumps,
the destination's lazy-pages daemon. A cut link then fails the connect or the transfer
within that time, not after the kernel's SYN retries (127 s) or retransmissions; the same
5 s as the control channel's TCP_USER_TIMEOUT (agent/channel.py). A criu without the patch
ignores it (and keeps the kernel's bounds).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from ferryman.errors import CriuMissing, UsageError

PAGE_RATE_ENV = "FERRYMAN_PAGE_RATE"
PAGE_TIMEOUT_ENV = "FERRYMAN_PAGE_TIMEOUT_MS"
PAGE_TIMEOUT_MS = 5000
MIN_MBIT = 1.0
MAX_MBIT = 34_000.0  # SO_MAX_PACING_RATE as CRIU sets it: a 32-bit byte rate
_MARK = PAGE_RATE_ENV.encode()


def check_max_bandwidth(mbit: float) -> float:
    """``mbit`` if it is a cap CRIU can apply, else UsageError."""
    if not MIN_MBIT <= mbit <= MAX_MBIT:
        raise UsageError(f"--max-bandwidth must be {MIN_MBIT:.0f}..{MAX_MBIT:.0f} Mbit/s, "
                         f"got {mbit:g}")
    return mbit


def bytes_per_s(mbit: float) -> int:
    return int(mbit * 125_000)


def criu_env(max_mbit: float | None, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a criu that connects to a page server: ``base``, the stall bound
    and, for a cap of ``max_mbit`` Mbit/s, the rate."""
    env = {**base, PAGE_TIMEOUT_ENV: str(PAGE_TIMEOUT_MS)}
    if max_mbit is not None:
        env[PAGE_RATE_ENV] = str(bytes_per_s(max_mbit))
    return env


def require_pacing(criu_bin: str) -> None:
    """CriuMissing unless the criu found as ``criu_bin`` knows FERRYMAN_PAGE_RATE (an
    unpatched CRIU would ignore the cap silently)."""
    path = shutil.which(criu_bin)
    if path is None:
        raise CriuMissing(f"{criu_bin} not found")
    if _MARK not in Path(path).read_bytes():
        raise CriuMissing(f"{path} cannot cap the page transfer (--max-bandwidth): it lacks "
                          "ferryman's CRIU patches; run 'make setup'")
