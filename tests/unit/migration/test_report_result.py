"""MigrationReport.result is one enum; the JSON keeps its strings (report/load.py reads them)."""

from __future__ import annotations

import json

from ferryman.migration.report import MigrationReport, Result


def test_result_is_written_as_its_string() -> None:
    r = MigrationReport(migration_id="m", mode="cold", source_node="a", destination="b:1",
                        source_pid=1)
    assert r.result is Result.FAILED  # until the migration says otherwise
    r.result = Result.ROLLED_BACK
    assert json.loads(json.dumps(r.to_json()))["result"] == "rolled_back"
    assert {str(x) for x in Result} == {"committed", "rolled_back", "failed", "lost"}
