"""The network lock CRIU leaves behind on the source after a dump with live TCP connections.

CRIU locks the dumped connections with an nftables table ``CRIU-<run id>`` (``--network-lock
nftables``) and, when the dump succeeds and the tasks are killed, keeps it: the destination's
restore removes its own copy, but the source's stays. Its rules drop those connections' packets
on this node for good, so a client on this node (``--probe``) never hears the moved service
again, and a workload that later moves back here with the same connections is cut off. Once
the destination has restored (the point of no return), the source removes this run's table
(:func:`find` while the destination restores, then :func:`remove`; :func:`release` does both),
and no other: a table of another CRIU run may be guarding
a migration that is still frozen.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
INVENTORY = "inventory.img"


def needed(*, tcp_established: bool, own_net_ns: bool, container: bool) -> bool:
    """Whether a final dump takes CRIU's network lock (pure). It guards what CRIU dumps of
    live TCP connections (``--tcp-established``, else CRIU refuses them), or of a network
    namespace the tree has of its own; a container's is runc's to take. Otherwise there is
    nothing for it to hold still, and taking it costs every migration: with nftables, a
    table created while the tree is frozen, deleted by CRIU (~10 ms) and listed and removed
    here (``nft``, 10-40 ms) before the command ends (measured in the bench, cold 256 MiB)."""
    return tcp_established or own_net_ns or container


def run_id(images: Path) -> str | None:
    """The CRIU run id the dump in ``images`` recorded (its inventory), or None."""
    path = images / INVENTORY
    if not path.exists():
        return None
    from pycriu import images as pimages

    try:
        with path.open("rb") as fh:
            entries = pimages.load(fh).get("entries") or []
    except Exception as exc:  # noqa: BLE001 - pycriu raises anything on a bad image
        log.warning("cannot read CRIU's run id from %s: %s", path, exc)
        return None
    value = entries[0].get("dump_criu_run_id") if entries else None
    return str(value) if value else None


def lock_tables(tables_json: str, run: str) -> list[str]:
    """From ``nft -j list tables``: the inet tables CRIU named for ``run`` (CRIU shortens the
    name to fit nftables' limit, so a table matches when its name is a prefix of ours)."""
    full = f"CRIU-{run}"
    names = []
    for item in json.loads(tables_json or "{}").get("nftables", []):
        table = item.get("table") if isinstance(item, dict) else None
        if isinstance(table, dict) and table.get("family") == "inet":
            name = str(table.get("name", ""))
            if name.startswith("CRIU-") and full.startswith(name) and len(name) > 12:
                names.append(name)
    return names


def locked_addresses(table_json: str) -> set[str]:
    """From ``nft -j list table``: every address at either end of a locked connection (CRIU's
    sets hold ``address . port . address . port`` for both directions)."""
    found: set[str] = set()
    for item in json.loads(table_json or "{}").get("nftables", []):
        nft_set = item.get("set") if isinstance(item, dict) else None
        if not isinstance(nft_set, dict):
            continue
        for elem in nft_set.get("elem") or []:
            parts = elem.get("concat") if isinstance(elem, dict) else None
            found.update(p for p in parts or [] if isinstance(p, str))
    return found


@dataclass(frozen=True, slots=True)
class NetworkLock:
    tables: list[str]
    addresses: frozenset[str]  # the ends of the locked connections


def inspect(images: Path) -> NetworkLock:
    """:func:`find`, and the addresses the tables lock."""
    tables = find(images)
    found: set[str] = set()
    for name in tables:
        res = _nft("-j", "list", "table", "inet", name)
        if res is not None and res.returncode == 0:
            found |= locked_addresses(res.stdout)
    return NetworkLock(tables, frozenset(found))


def find(images: Path) -> list[str]:
    """The lock tables of the dump in ``images`` on this node (nothing when it took none)."""
    run = run_id(images)
    return [] if run is None else tables_of([run])


def tables_of(runs: Collection[str]) -> list[str]:
    """The lock tables of these CRIU runs on this node (one listing for all of them)."""
    if not runs:
        return []
    res = _nft("-j", "list", "tables")
    if res is None:
        return []
    if res.returncode != 0:
        log.warning("cannot list nftables tables to release CRIU's lock: %s", res.stderr.strip())
        return []
    return list(dict.fromkeys(t for run in runs for t in lock_tables(res.stdout, run)))


def remove(tables: list[str]) -> list[str]:
    """Delete these inet tables (~10 ms each); the ones removed."""
    removed = []
    for name in tables:
        gone = _nft("delete", "table", "inet", name)
        if gone is None:
            break
        if gone.returncode == 0:
            log.info("removed CRIU's network lock %s", name)
            removed.append(name)
        else:
            log.warning("cannot remove CRIU's lock table %s: %s", name, gone.stderr.strip())
    return removed


def release(images: Path) -> list[str]:
    """:func:`find`, then :func:`remove`: the tables removed."""
    return remove(find(images))


def _nft(*args: str) -> subprocess.CompletedProcess[str] | None:
    """Run nft(8); None (and a warning) when this node has no nft: CRIU locks through
    libnftables, which does not need it, so its tables then stay."""
    try:
        return subprocess.run(["nft", *args], capture_output=True, text=True, check=False)
    except OSError as exc:
        log.warning("cannot run nft to remove CRIU's network lock (install nftables): %s", exc)
        return None
