"""Pre-flight rows for a runc container (``ferryman check --runc ID``). Pure.

What can be known before anything is frozen: runc and rsync on both nodes (the destination
says so in its Hello features), the container running here with its stdio not on a console,
soft-dirty tracking here for pre-copy and hybrid (the same row the process checks show), and
lazy pages on both nodes for post-copy and hybrid. The process-tree checks (dry-run dump,
open files, PIDs) do not apply: runc builds the container's mounts and namespaces itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ferryman.migration.verdict import ALL_MODES, LAZY_MODES, TRACKING_MODES, Row, Status

RUNC_FEATURE = "runc"
RSYNC_FEATURE = "rsync"
CONTAINER_MODES = ALL_MODES


@dataclass(frozen=True, slots=True)
class ContainerFacts:
    """The container as the source sees it; ``problem`` is why it cannot move (or None)."""

    id: str
    pid: int = 0
    bundle: str = ""
    problem: str | None = None
    fix: str = ""


def _tool(side: str, node: str, name: str, present: bool | None) -> Row:
    if present:
        return Row(name, side, Status.PASS, f"{name} is installed on {node}")
    if present is None:
        return Row(name, side, Status.WARN, f"{node}'s agent does not say whether {name} "
                   "is installed (an older ferryman)", "update ferryman there")
    return Row(name, side, Status.FAIL, f"{name} is not installed on {node}",
               f"install Debian's {name} package there ('make setup' does)")


def runc_rows(*, here: str, there: str, local_tools: Mapping[str, bool],
              dest_features: Mapping[str, bool], container: ContainerFacts,
              postcopy_blocker: str | None, dirty_tracking: bool) -> list[Row]:
    """The verdict rows for moving ``container`` from ``here`` to ``there``;
    ``dirty_tracking``: this node's CRIU has ``mem_track`` (soft-dirty)."""
    rows = [_tool("source", here, RUNC_FEATURE, local_tools.get(RUNC_FEATURE, False)),
            _tool("source", here, RSYNC_FEATURE, local_tools.get(RSYNC_FEATURE, False)),
            _tool("destination", there, RUNC_FEATURE, dest_features.get(RUNC_FEATURE)),
            _tool("destination", there, RSYNC_FEATURE, dest_features.get(RSYNC_FEATURE))]
    if container.problem is None:
        rows.append(Row("container", "source", Status.PASS,
                        f"{container.id} runs as PID {container.pid} (bundle "
                        f"{container.bundle})"))
    else:
        rows.append(Row("container", "source", Status.FAIL, container.problem,
                        container.fix or "start the container"))
    return rows + container_kernel_rows(here, dirty_tracking, postcopy_blocker)


def container_kernel_rows(here: str, dirty_tracking: bool,
                          postcopy_blocker: str | None) -> list[Row]:
    """What a container's modes need of the kernel, for runc's and Podman's checks alike:
    soft-dirty on the source (runc pre-dumps it: no uffd-wp tracker) and lazy pages."""
    rows = []
    if dirty_tracking:
        rows.append(Row("kernel.dirty-tracking", "source", Status.PASS,
                        f"{here}: soft-dirty memory tracking (pre-copy): present",
                        modes=TRACKING_MODES))
    else:
        rows.append(Row("kernel.dirty-tracking", "source", Status.FAIL,
                        f"{here}: soft-dirty memory tracking (pre-copy): missing",
                        f"use --mode cold or postcopy; pre-copy needs CONFIG_MEM_SOFT_DIRTY "
                        f"on {here}", modes=TRACKING_MODES))
    if postcopy_blocker is None:
        rows.append(Row("lazy-pages", "destination", Status.PASS,
                        "userfaultfd and 4 MiB pipes for post-copy", modes=LAZY_MODES))
    else:
        rows.append(Row("lazy-pages", "both", Status.FAIL, postcopy_blocker,
                        "use --mode cold", modes=LAZY_MODES))
    return rows
