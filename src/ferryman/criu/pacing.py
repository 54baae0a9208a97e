"""The page transfer's bandwidth cap (``migrate --max-bandwidth``), applied by CRIU itself.

Our CRIU build (``scripts/criu-patches/tls-bulk-pace.patch``) sets ``SO_MAX_PACING_RATE`` to
``FERRYMAN_PAGE_RATE`` bytes/s on every page socket it opens or accepts: a dump's and a
pre-dump's connection to the page server, and a lazy dump's served connection (post-copy's
pages, background push included). The kernel's TCP pacing then holds the rate on the wire.
Only the source's criu gets the variable: pages flow from it in every mode.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from ferryman.errors import CriuMissing, UsageError

PAGE_RATE_ENV = "FERRYMAN_PAGE_RATE"
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


def criu_env(max_mbit: float | None, base: Mapping[str, str]) -> dict[str, str] | None:
    """criu's environment for a cap of ``max_mbit`` Mbit/s: ``base`` plus the rate; None
    (criu inherits ours) without a cap."""
    if max_mbit is None:
        return None
    return {**base, PAGE_RATE_ENV: str(bytes_per_s(max_mbit))}


def require_pacing(criu_bin: str) -> None:
    """CriuMissing unless the criu found as ``criu_bin`` knows FERRYMAN_PAGE_RATE (an
    unpatched CRIU would ignore the cap silently)."""
    path = shutil.which(criu_bin)
    if path is None:
        raise CriuMissing(f"{criu_bin} not found")
    if _MARK not in Path(path).read_bytes():
        raise CriuMissing(f"{path} cannot cap the page transfer (--max-bandwidth): it lacks "
                          "ferryman's CRIU patches; run 'make setup'")
