"""The destination's pre-flight answer for a Podman container (``check --podman``): what
Podman here says about its runtime, cgroup manager, the image and the name and id."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ferryman import wire
from ferryman.agent.config import AgentConfig
from ferryman.errors import FerrymanError
from ferryman.migration.podman_checks import DestinationFacts, PodmanQuery, destination_rows
from ferryman.migration.verdict import rows_to_json
from ferryman.mode import Mode
from ferryman.targets.podman import Podman

log = logging.getLogger(__name__)


async def facts(q: PodmanQuery) -> DestinationFacts:
    podman = Podman()
    try:
        info = await podman.info()
        return DestinationFacts(runtime=info.runtime, cgroup_manager=info.cgroup_manager,
                                image=await podman.image_exists(q.image),
                                name_taken=await podman.container_exists(q.name),
                                id_taken=await podman.container_exists(q.id))
    except FerrymanError as exc:
        return DestinationFacts(problem=exc.message)


async def answer(q: PodmanQuery, source: str, cfg: AgentConfig, modes: Sequence[Mode]
                 ) -> wire.CheckReport:
    rows = destination_rows(cfg.name, q, await facts(q))
    log.info("pre-flight check of Podman container %s from %s: %s", q.name, source,
             ", ".join(f"{r.check}={r.status.value}" for r in rows))
    return wire.CheckReport(rows_to_json(cfg.name, modes, rows))
