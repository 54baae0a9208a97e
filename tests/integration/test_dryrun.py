"""The pre-flight's dry-run dump (ferryman.criu.dryrun) with the real criu on a real tree.

Our CRIU build (scripts/criu-patches/dry-run-no-lazy-pages.patch) neither scans nor splices
the pages lazy-pages would serve when the dry run asks it to (FERRYMAN_DRY_RUN): CRIU's own
log (level 4 lists every mapping it generated a pagemap for) is the judge here.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from ferryman.criu.client import Criu
from ferryman.criu.dryrun import LOG_FILE, dry_run_dump
from tests.integration.conftest import Cluster
from tests.support.workloads import alive

MIB = 64
PAGEMAP = re.compile(r"Pagemap generated: (\d+) pages \((\d+) lazy\)")


def pagemap_pages(log: str) -> int:
    """The pages CRIU took into its page pipes, over every mapping its log lists."""
    return sum(int(m.group(1)) for m in PAGEMAP.finditer(log))


def test_the_dry_run_takes_none_of_the_lazy_pages_and_the_tree_runs_on(
        cluster: Cluster, tmp_path: Path) -> None:
    w = cluster.workload(mib=MIB, seed="dry-run")
    try:
        w.status()
        w.reset_gap()
        criu = Criu(log_level=4)
        result = asyncio.run(dry_run_dump(criu, w.pid, tmp_path))
        assert result.ok, result.reason
        assert result.freeze_ms is not None
        log = (tmp_path / LOG_FILE).read_text(errors="replace")
        assert "Dumping pages" in log  # the tasks' memory was walked, mapping by mapping
        taken = pagemap_pages(log)
        # the workload's 64 MiB heap (16384 pages) is lazy memory: none of it was taken
        # (what is left: the stacks' pages, which a lazy dump always sends at once)
        assert taken < MIB * 256 // 16, taken
        assert [p.name for p in tmp_path.iterdir()] == [LOG_FILE]  # no images kept
        assert alive(w.pid)
        status = w.status()
        assert status["bad_pages"] == 0
        assert float(status["max_gap_ms"]) < result.freeze_ms + 5  # type: ignore[arg-type]
    finally:
        w.kill()
