"""The migration report: what happened, when, how long, how much. Pure data, JSON-ready."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from ferryman.host.tcpprobe import ProbeReport

__all__ = ["MigrationReport", "PhaseTiming", "ProbeReport", "Result"]


class Result(enum.StrEnum):
    """How a migration ended, as the report says it (the values are the JSON strings)."""

    COMMITTED = "committed"  # running on the destination
    ROLLED_BACK = "rolled_back"  # running on the source again
    FAILED = "failed"  # stopped before anything was frozen, or not started
    LOST = "lost"  # neither node runs it


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
    result: Result = Result.FAILED
    destination_node: str = ""
    destination_pid: int | None = None
    # frozen until the destination resumed it; excludes the post-copy tail's fault waits
    # (lazy_fault_wait_ms, lazy_fault_max_ms)
    downtime_ms: float | None = None
    freeze_start_ms: float | None = None  # when the freeze began, since the start (as phases)
    total_ms: float = 0.0
    bytes_transferred: int = 0
    image_bytes: int = 0
    page_bytes: int = 0
    rss_bytes: int = 0
    # memory the destination holds resident for the frozen window (serve --prefault); the ms
    # it spent making memory resident are steps["prefault"] (part of plan_ready), also when
    # it gave it all back (0 bytes: it was resident already)
    prefault_bytes: int = 0
    freeze_method: str = "ptrace"  # or cgroup-v1 / cgroup-v2: we froze its cgroup ourselves
    freeze_ms: float | None = None
    memory_complete_ms: float | None = None  # post-copy: restore until every page arrived
    final_pages: int | None = None  # pages the freezing dump wrote (after pre-copy: the delta)
    lazy_pages: int | None = None
    lazy_faults: int | None = None  # pages fetched on a fault; the rest were pushed
    # after the resume, the workload's threads waited this long on those faults, all together,
    # and this long at most on one (measured by the destination's lazy-pages daemon)
    lazy_fault_wait_ms: float | None = None
    lazy_fault_max_ms: float | None = None
    # pre-copy: one entry per pre-dump (index, pages_written, pages_skipped, pages_scanned,
    # bytes, seconds, frozen_ms, predicted_downtime_ms), the policy and why it stopped
    iterations: list[dict[str, Any]] = field(default_factory=list)
    policy: str | None = None
    dirty_tracker: str | None = None  # pre-copy: "soft-dirty" or "uffd-wp" (issue 15)
    # cold: the pages went straight into the restored tree, held stopped (migration/plan.py,
    # rule 5), and the destination had them all this long after its restore (in the downtime)
    streamed: bool = False
    streamed_fetch_ms: float | None = None
    convergence: str | None = None
    predicted_downtime_ms: float | None = None
    over_budget: bool = False  # the policy finished knowing the budget would be missed
    switched_to_postcopy: bool = False  # the budget policy made the final step lazy
    mode_reason: str | None = None  # --mode auto: why this mode
    link_bytes_per_s: float | None = None  # --mode auto, --compress auto: the link's rate
    link_source: str | None = None  # how it was known: measured, assumed, remembered (when)
    dry_run_freeze_ms: float | None = None  # pre-flight: the dry-run dump's freeze
    fixed_cost_ms: float | None = None  # pre-copy: the prediction's downtime without memory
    bandwidth_bytes_per_s: float | None = None  # pre-copy: fitted from the pre-dumps
    restore_bytes_per_s: int | None = None  # pre-copy: the destination's page read rate
    max_bandwidth_bytes_per_s: float | None = None  # --max-bandwidth: the pages' cap on the wire
    # --compress: {"setting", "on", "reason", "sample_ratio", "compress_bytes_per_s",
    # "link_bytes_per_s"} and, compressed, "raw_bytes" (CRIU's page stream), "wire_bytes"
    # (the relay's frames on the TLS stream) and "ratio" (raw / wire)
    compression: dict[str, Any] = field(default_factory=dict)
    criu: dict[str, dict[str, int]] = field(default_factory=dict)
    phases: list[PhaseTiming] = field(default_factory=list)
    # before the freeze, each step's own wall time in ms (agent/steps.py): hello_facts (CRIU's
    # version, features and cpuinfo; cached, see criu/factcache.py), connect, hello_exchange,
    # destination_rows, feature_probes, dry_run, dirty_rate, link_test, plan_ready (the
    # destination's CPU check and page server start); overlapping steps each count their own
    steps: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    logs: dict[str, str] = field(default_factory=dict)
    destination_log_tail: str = ""
    container: str = ""  # a runc container's id ("" for a process tree)
    # a container's own steps: rsync phases (presync_*, final_sync_*: _ms, _bytes) and, cold,
    # runc_after_commit_ms: runc's clean-up after the commit (not in downtime_ms)
    sync: dict[str, float] = field(default_factory=dict)
    probe: ProbeReport | None = None  # --probe: the client-observed downtime
    # --move-address with live connections: segments that reached the source while it was
    # frozen (CRIU's lock dropped them), sent on to the destination after its restore
    forwarded_packets: int | None = None
    # the command was run by the agent's launcher, already imported and warm (cli/launcher.py)
    launched: bool = False

    def count_pages(self, final_bytes: int = 0) -> None:
        """``page_bytes``: the pre-dumps' pages plus those of the final (or lazy) step."""
        self.page_bytes = sum(int(i["bytes"]) for i in self.iterations) + final_bytes

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
