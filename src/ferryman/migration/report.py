"""The migration report: what happened, when, how long, how much. Pure data, JSON-ready."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class PhaseTiming:
    phase: str
    start_ms: float
    duration_ms: float


@dataclass
class MigrationReport:
    migration_id: str
    mode: str
    source_node: str
    destination: str
    source_pid: int
    result: str = "failed"  # committed | rolled_back | failed | lost
    destination_node: str = ""
    destination_pid: int | None = None
    downtime_ms: float | None = None
    total_ms: float = 0.0
    bytes_transferred: int = 0
    image_bytes: int = 0
    page_bytes: int = 0
    rss_bytes: int = 0
    freeze_method: str = "ptrace"  # or cgroup-v1 / cgroup-v2: we froze its cgroup ourselves
    freeze_ms: float | None = None
    memory_complete_ms: float | None = None  # post-copy: restore until every page arrived
    lazy_pages: int | None = None
    lazy_faults: int | None = None  # pages fetched on a fault; the rest were pushed
    criu: dict[str, dict[str, int]] = field(default_factory=dict)
    phases: list[PhaseTiming] = field(default_factory=list)
    error: str | None = None
    logs: dict[str, str] = field(default_factory=dict)
    destination_log_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
