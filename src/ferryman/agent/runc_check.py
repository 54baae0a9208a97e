"""``ferryman check --runc ID``: what can be checked for a container before moving it.

Asks the container's state here (runc), says hello to the destination agent (its features
tell whether it has runc and rsync, and lazy pages; ours whether pre-copy can track dirty
memory here), and ends the conversation; nothing is
frozen. The rows come from :func:`ferryman.migration.runc_checks.runc_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.agent.container import RuncTarget, SourceContainer, tools_present
from ferryman.agent.gate import end_check
from ferryman.agent.role import SourceOptions
from ferryman.agent.session import greet
from ferryman.criu.client import Criu
from ferryman.errors import RuncError
from ferryman.migration.plan import postcopy_blocker
from ferryman.migration.runc_checks import CONTAINER_MODES, ContainerFacts, runc_rows
from ferryman.migration.verdict import Verdict, merge
from ferryman.mode import MODES, Mode


@dataclass(frozen=True, slots=True)
class RuncCheckResult:
    verdict: Verdict
    container: ContainerFacts
    destination: str


async def run_runc_check(target: RuncTarget, opts: SourceOptions, requested: Mode | None
                         ) -> RuncCheckResult:
    try:
        box = await SourceContainer.open(target)
        facts = ContainerFacts(target.id, box.pid, str(box.config.bundle))
    except RuncError as exc:
        facts = ContainerFacts(target.id, problem=exc.message, fix=exc.hint or "")
    g = await greet(Criu(opts.criu_bin), opts.creds, opts.state_dir, host=opts.host, port=opts.port,
                    timeout=opts.timeouts.hello)
    ours, theirs = g.ours, g.theirs
    try:
        await end_check(g.ch, "pre-flight check only")
    finally:
        await g.ch.close()
    blocker = postcopy_blocker(ours.features, opts.creds.name) or \
        postcopy_blocker(theirs.features, theirs.node)
    rows = runc_rows(here=opts.creds.name, there=theirs.node,
                     local_tools=tools_present(target.binary), dest_features=theirs.features,
                     container=facts, postcopy_blocker=blocker,
                     dirty_tracking=ours.features.get("mem_track", False))
    supported = [m for m in MODES if m in CONTAINER_MODES]
    return RuncCheckResult(merge(rows, [], supported, requested), facts, theirs.node)
