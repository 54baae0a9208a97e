"""Kernel features CRIU's RPC feature check does not cover, asked with ``criu check --feature``.

``criu check --feature NAME`` exits 0 when the feature works on this kernel (it really tries:
the network-lock probe creates and removes an nftables table). One feature per run: CRIU
honours only the last ``--feature`` of a command line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from ferryman.errors import CriuMissing

log = logging.getLogger(__name__)

PROBES: Final[Mapping[str, str]] = MappingProxyType({
    "network_lock": "network_lock_nftables",  # dump/restore lock the network with nftables
    "time_ns": "timens",  # restore keeps the workload's monotonic clocks in a time namespace
    # not the kernel's: our CRIU patch (xfer-relay-sockets.patch) that lets a lazy dump serve
    # its pages on a socket ferryman's page relay hands it
    "lazy_relay": "lazy_ps_socket",
    # likewise (relay-frames-lazy.patch): its lazy-pages daemon decodes the page relay's
    # frames itself, so that the destination's relay passes them on as they came
    "relay_frames": "ps_relay_frames",
})
"""Our feature name -> CRIU's ``check --feature`` name."""

PROBE_TIMEOUT: Final = 30.0


async def _probe(criu_bin: str, feature: str) -> bool:
    try:
        proc = await asyncio.create_subprocess_exec(
            criu_bin, "check", "--feature", feature,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
    except FileNotFoundError as exc:
        raise CriuMissing(f"{criu_bin} not found") from exc
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("criu check --feature %s timed out", feature)
        return False
    log.debug("criu check --feature %s: %s", feature, out.decode(errors="replace").strip())
    return proc.returncode == 0


async def probe_features(criu_bin: str) -> dict[str, bool]:
    """Every feature of :data:`PROBES`: name -> works on this kernel."""
    names = list(PROBES)
    results = await asyncio.gather(*(_probe(criu_bin, PROBES[n]) for n in names))
    return dict(zip(names, results, strict=True))
