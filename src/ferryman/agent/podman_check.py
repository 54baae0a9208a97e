"""``ferryman check --podman NAME``: what can be checked before moving a Podman container.

Asks Podman and runc here about the container, says hello to the destination agent, asks it
(a CheckRequest naming the container) whether its Podman has the image and neither the name
nor the id, and ends the conversation; nothing is frozen. Rows:
:mod:`ferryman.migration.podman_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman import wire
from ferryman.agent.gate import end_check
from ferryman.agent.podman import PodmanSource
from ferryman.agent.role import SourceOptions
from ferryman.agent.session import greet
from ferryman.criu.client import Criu
from ferryman.errors import RuncError
from ferryman.migration.plan import postcopy_blocker
from ferryman.migration.podman_checks import (
    PodmanQuery,
    SourceFacts,
    encode_query,
    source_rows,
)
from ferryman.migration.verdict import MODES, Row, Verdict, merge, rows_from_json
from ferryman.targets.podman import PodmanTarget


@dataclass(frozen=True, slots=True)
class PodmanCheckResult:
    verdict: Verdict
    container: SourceFacts
    destination: str


async def run_podman_check(target: PodmanTarget, opts: SourceOptions, requested: str | None
                           ) -> PodmanCheckResult:
    query: PodmanQuery | None = None
    try:
        box = await PodmanSource.open_podman(target, {})
        facts = SourceFacts(box.ctr.name, box.pid, box.ctr.image_name, box.info.runtime,
                            box.info.cgroup_manager)
        query = PodmanQuery(box.ctr.id, box.ctr.name, box.ctr.image_id)
    except RuncError as exc:
        facts = SourceFacts(target.name, problem=exc.message, fix=exc.hint or "")
    g = await greet(Criu(opts.criu_bin), opts.creds, opts.state_dir, host=opts.host, port=opts.port,
                    timeout=opts.timeouts.hello)
    ch, ours, theirs = g.ch, g.ours, g.theirs
    try:
        dest_rows: tuple[Row, ...] = ()
        if query is not None:
            await ch.send(wire.CheckRequest(encode_query(query)))
            report = await ch.expect((wire.CheckReport,), opts.timeouts.hello)
            _, _, dest_rows = rows_from_json(report.result)
        await end_check(ch, "pre-flight check only")
    finally:
        await ch.close()
    blocker = postcopy_blocker(ours.features, opts.creds.name) or \
        postcopy_blocker(theirs.features, theirs.node)
    rows = source_rows(opts.creds.name, facts, postcopy_blocker=blocker,
                       dirty_tracking=ours.features.get("mem_track", False))
    return PodmanCheckResult(merge(rows, dest_rows, list(MODES), requested), facts,
                             theirs.node)
