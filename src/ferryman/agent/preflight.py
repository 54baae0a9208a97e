"""Pre-flight checks, the I/O half: what a node finds about itself, and the destination's answer.

The rules (facts in, rows out) are pure and live in :mod:`ferryman.migration.checks`; this
module gathers the facts: CRIU's version and features (RPC feature check, ``criu check
--feature``, the pipe-size sysctl, minus the test-only hidden ones), the source's CPU checked
with CRIU's cpuinfo, which PIDs are taken, the local addresses and bound ports, what the
workload's paths are here, free memory and disk.

In a session the destination answers any number of CheckRequests after Hello, then gets a
Plan (``ferryman migrate``) or an Abort (``ferryman check``): :func:`serve_checks`.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ferryman import wire
from ferryman.agent import podman_preflight
from ferryman.agent.channel import Channel
from ferryman.agent.config import AgentConfig
from ferryman.agent.hello import node_features
from ferryman.criu.client import Criu
from ferryman.errors import PidControlError, RemoteProtocolError
from ferryman.host import filelocks, netinfo, pidctl, procfs, unix_peers
from ferryman.host.exposure import answerable
from ferryman.host.inspect import PTS, FileRef, FileStat, stat_path
from ferryman.migration import podman_checks
from ferryman.migration.checks import (
    NOTE,
    DestinationFacts,
    NodeFacts,
    destination_rows,
    synced_by,
)
from ferryman.migration.query import CheckQuery, decode_query
from ferryman.migration.verdict import Row, Status, rows_to_json
from ferryman.mode import Mode

log = logging.getLogger(__name__)


async def node_facts(criu: Criu, node: str, state_dir: Path,
                     hidden: Iterable[str] = ()) -> NodeFacts:
    """This node's CRIU version and every feature the checks ask about."""
    facts, features = await node_features(criu, state_dir)
    features.update(await criu.probes())
    for name in hidden:  # test-only: pretend CRIU lacks it (serve --test-hide-feature)
        features[name] = False
    return NodeFacts(node=node, criu_version=str(facts.version), features=features)


def taken_ids(ids: Sequence[int], proc: Path = procfs.PROC) -> tuple[int, ...]:
    """The ids in use in this PID namespace (ids the kernel could never give count as taken)."""
    taken = []
    for pid in ids:
        try:
            free = pidctl.pid_available(pid, proc)
        except PidControlError:
            free = False
        if not free:
            taken.append(pid)
    return tuple(taken)


def taken_ptys(ptys: Sequence[int], pts: Path = Path(PTS)) -> tuple[int, ...]:
    """The terminal indexes in use in this node's /dev/pts (CRIU needs each one free)."""
    return tuple(n for n in ptys if (pts / str(n)).exists())


async def cpu_problem(criu: Criu, cpuinfo: bytes, state_dir: Path) -> str | None:
    """None when a dump from the CPU ``cpuinfo`` describes can be restored here."""
    state_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one local mkdir
    with tempfile.TemporaryDirectory(dir=state_dir, prefix="check-cpu-") as tmp:
        (Path(tmp) / "cpuinfo.img").write_bytes(cpuinfo)
        return await criu.cpuinfo_check(Path(tmp))


async def destination_facts(q: CheckQuery, source_hello: wire.Hello, cfg: AgentConfig,
                            criu: Criu) -> DestinationFacts:
    net = procfs.PROC / "self" / "net"
    w = q.workload
    node, cpu = await asyncio.gather(  # two criu runs, independent: together
        node_facts(criu, cfg.name, cfg.state_dir, cfg.hidden_features),
        cpu_problem(criu, source_hello.cpuinfo, cfg.state_dir))
    files = {f.path: stat_path(f.path) for f in w.files}
    return DestinationFacts(
        criu=node,
        cpu_problem=cpu,
        taken_ids=() if w.own_pid_ns else taken_ids(w.ids),
        taken_ptys=taken_ptys(w.ptys),
        networks=frozenset(netinfo.local_networks(net)),
        bound=tuple(s for s in netinfo.read_inet_sockets(net) if s.binds),
        files=files,
        memory_available=procfs.memory_available(),
        disk_free=procfs.disk_free(cfg.state_dir),
        locked_here=tuple(_locked_here(w.locked_files, files)),
        unix_unreachable=tuple((name, why) for name in w.unix_peers
                               if (why := unix_peers.reachable(name)) is not None),
    )


def _locked_here(paths: Sequence[str], files: Mapping[str, FileStat | None]) -> list[str]:
    """Which of the files the tree holds locks on some process here holds a lock on."""
    if not paths:
        return []
    found = [(p, st.dev, st.ino) for p in paths if (st := files.get(p)) is not None]
    return filelocks.locked_here(filelocks.read_locks(), found)


def withhold(q: CheckQuery, roots: Sequence[Path]) -> tuple[CheckQuery, int]:
    """The query without the files this node does not answer about (see
    :mod:`ferryman.host.exposure`; never even looked at), and how many of those the checks
    would have compared (synced ones aside: the sync brings those)."""
    kept: list[FileRef] = []
    dropped: list[FileRef] = []
    for f in q.workload.files:
        (kept if answerable(f.path, roots) else dropped).append(f)
    peers = tuple(n for n in q.workload.unix_peers  # abstract names: no file to tell about
                  if n.startswith("@") or answerable(n, roots))
    unasked = len(q.workload.unix_peers) - len(peers)
    if not dropped and not unasked:
        return q, 0
    withheld = sum(1 for f in dropped if not synced_by(f.path, q.synced)) + unasked
    answered = {f.path for f in kept}
    locked = tuple(p for p in q.workload.locked_files if p in answered)
    return replace(q, workload=replace(q.workload, files=tuple(kept), locked_files=locked,
                                       unix_peers=peers)), withheld


def withheld_row(count: int, node: str) -> Row:
    """A note: ``count`` files were not compared (private on ``node``)."""
    return Row("files.withheld", "destination", Status.WARN,
               f"{count} files not compared: {node} tells peers only about files any local "
               "user there may read, or under its --check-roots",
               f"compare them by hand, name their directory with --sync, or list it in "
               f"'ferryman serve --check-roots' on {node}", NOTE)


async def answer(request: wire.CheckRequest, source_hello: wire.Hello, cfg: AgentConfig,
                 criu: Criu, modes: Sequence[Mode]) -> wire.CheckReport:
    """The destination's rows for one CheckRequest (RemoteProtocolError if it is malformed).

    Files are answered for only where :func:`ferryman.host.exposure.answerable` allows: for
    the others the report says how many were withheld, never whether they exist.
    """
    podman = podman_checks.decode_query(request.query)
    if podman is not None:  # a Podman container: its own rows (agent/podman_preflight.py)
        return await podman_preflight.answer(podman, source_hello.node, cfg, modes)
    q, withheld = withhold(decode_query(request.query), cfg.check_roots)
    facts = await destination_facts(q, source_hello, cfg, criu)
    rows = destination_rows(q, facts, source_hello.node)
    if withheld:
        rows.append(withheld_row(withheld, cfg.name))
    log.info("pre-flight check of PID %d from %s: %s", q.workload.pid, source_hello.node,
             ", ".join(f"{r.check}={r.status.value}" for r in rows))
    return wire.CheckReport(rows_to_json(cfg.name, modes, rows))


async def serve_checks(ch: Channel, source_hello: wire.Hello, cfg: AgentConfig, criu: Criu,
                       modes: Sequence[Mode]) -> wire.Plan | None:
    """After Hello: answer CheckRequests (and LinkTests) until a Plan comes (returned) or an
    Abort (answered with Aborted; returns None: the source only wanted the checks)."""
    while True:
        msg = await ch.expect((wire.Plan, wire.CheckRequest, wire.LinkTest, wire.Abort),
                              cfg.timeouts.plan)
        if isinstance(msg, wire.Plan):
            return msg
        if isinstance(msg, wire.LinkTest):  # the source times the link (agent/link.py)
            await ch.send(wire.LinkReport(len(msg.payload)))
            continue
        if isinstance(msg, wire.Abort):
            log.info("%s ended the session before a plan: %s", ch.peer, msg.reason)
            await ch.send(wire.Aborted())
            return None
        try:
            report = await answer(msg, source_hello, cfg, criu, modes)
        except RemoteProtocolError as exc:
            await ch.send(wire.Error(code="bad-check", message=exc.message[:4000]))
            raise
        await ch.send(report)
