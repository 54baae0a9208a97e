"""A restore that fails on the destination: the one-line error names CRIU's reason and a log
that is there (issue 14, item 3), and the workload keeps running on the source."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.conftest import Cluster
from tests.support.workloads import alive

EXIT_ROLLED_BACK = 8


def test_failed_restore_names_criu_reason_and_a_log_that_exists(cluster: Cluster) -> None:
    b = cluster.start_agent("b", hide_dir=True)
    held = cluster.hidden_dir / "data.txt"
    held.write_text("only on node A\n")
    w = cluster.workload(mib=16, seed="restore-fails", hold_file=str(held))
    try:
        # --sync: "I copy it myself" (but nobody does): the check passes, CRIU's restore fails
        mig, report = cluster.migrate(w.pid, b, "--sync", str(cluster.hidden_dir))
        assert mig.returncode == EXIT_ROLLED_BACK, mig.stderr
        assert alive(w.pid)
        assert w.status()["bad_pages"] == 0
        error = str(report["error"])
        # CRIU's own first error names the file it could not open (without the leading /)
        assert f"Can't open file {str(held).lstrip('/')}" in error, error
        logs = re.findall(r"\(log: ([^)\s]+)\)", error)
        assert logs, error
        for log in logs:
            assert Path(log).is_file(), f"the error names {log}, which is not there"
            assert Path(log).is_relative_to(b.state_dir / "failed")
        assert b.migration_dirs() == []
    finally:
        w.kill()
