"""``ferryman check`` as a session: Hello, one CheckRequest, then Abort. Nothing is planned.

Also the options ``ferryman migrate`` passes to the source role, with its pre-flight policy
(``--force``) attached (see :class:`ferryman.agent.gate.HasPreflightPolicy`).
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field, replace

from ferryman.agent import linkmemo
from ferryman.agent.gate import CheckResult, PreflightPolicy, collect_verdict, end_check
from ferryman.agent.linkrate import timed_and_remembered
from ferryman.agent.role import SourceOptions
from ferryman.agent.session import greet
from ferryman.criu.client import Criu
from ferryman.host.procfs import identity
from ferryman.migration.verdict import Status, Verdict
from ferryman.mode import Mode


@dataclass
class MigrateOptions(SourceOptions):
    """Source options with the pre-flight policy of ``ferryman migrate``."""

    preflight: PreflightPolicy = field(default_factory=PreflightPolicy)


@dataclass(frozen=True, slots=True)
class CheckOptions:
    source: SourceOptions  # pid, destination, credentials, state dir, criu binary
    requested: Mode | None = None
    synced: tuple[str, ...] = ()


async def run_check(opts: CheckOptions) -> CheckResult:
    """Ask the destination agent and check here; the workload is frozen only for the
    dry-run dump (tens of ms), while the link is timed (and remembered: agent/linkmemo.py).
    Keeps the dry-run log only when that dump failed."""
    source = opts.source
    identity(source.pid)  # NoSuchProcess before anything else
    criu = Criu(source.criu_bin)
    workdir = source.state_dir / "checks" / (time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8])
    workdir.mkdir(parents=True, mode=0o700)
    g = await greet(criu, source.creds, source.state_dir, host=source.host, port=source.port,
                    timeout=source.timeouts.hello)
    ch = g.ch
    link: list[float | None] = []

    async def time_link(_rows: Verdict) -> None:  # beside the dry run; kept for migrations
        key = linkmemo.memo_key(g.theirs.node, source.host, source.port)
        link.append(await timed_and_remembered(ch, {}, state_dir=source.state_dir, key=key,
                                               by="check", timeout=source.timeouts.plan))

    try:
        result = await collect_verdict(ch, criu, g.ours, g.theirs, pid=source.pid, workdir=workdir,
                                       requested=opts.requested, synced=opts.synced,
                                       timeout=source.timeouts.plan, alongside=time_link)
        await end_check(ch, "pre-flight check only")
    finally:
        await ch.close()
    if link:
        result = replace(result, link_timed=True, link_bytes_per_s=link[0])
    dump_failed = any(r.check == "dump" and r.status is Status.FAIL
                      for r in result.verdict.rows)
    if not dump_failed:
        shutil.rmtree(workdir, ignore_errors=True)
    return result

