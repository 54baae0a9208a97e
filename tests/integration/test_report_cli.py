"""``ferryman report`` on the reports of real migrations: text, JSON and the timeline PNG."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Cluster, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("mode", ["cold", "postcopy"])
def test_report_summarises_and_draws_a_real_migration(cluster: Cluster, mode: str) -> None:
    pytest.importorskip("matplotlib")
    b = cluster.start_agent("b")
    w = cluster.workload(mib=16, seed=f"report-{mode}")
    new_pid: int | None = None
    try:
        res, report = cluster.migrate(w.pid, b, "--mode", mode,  # cold: with CRIU's dump stats
                                      *(("--cold-restore", "images") if mode == "cold" else ()))
        assert res.returncode == 0, res.stderr + res.stdout
        pid = report["destination_pid"]
        assert isinstance(pid, int)
        new_pid = pid
        # migrate's own short summary now comes from ferryman.report.
        assert f"COMMITTED ({mode})" in res.stdout
        path = cluster.base / f"report-{w.pid}.json"
        png = cluster.base / f"timeline-{mode}.png"

        out = run_cli("report", str(path), "--plot", str(png))
        assert out.returncode == 0, out.stderr
        text = out.stdout
        assert text.startswith(f"migration {report['migration_id']}: COMMITTED ({mode})\n")
        assert "\nphases\n" in text
        for phase in ("HELLO", "FREEZING", "TRANSFERRING", "AWAIT_RESTORE", "DONE"):
            assert f"\n  {phase} " in text
        assert "* the workload was frozen for" in text
        if mode == "postcopy":
            assert "  SERVING_PAGES " in text
            assert "lazy pages arrived" in text
            assert "page tail: every page on the destination at" in text
        else:
            assert "criu dump\n  times      freezing" in text
        assert "criu restore\n  times" in text
        assert f"timeline written to {png}" in text
        assert png.read_bytes().startswith(PNG_MAGIC)
        assert png.stat().st_size > 20_000

        js = run_cli("report", str(path), "--json")
        assert js.returncode == 0, js.stderr
        assert json.loads(js.stdout) == report
    finally:
        w.kill(new_pid)


def test_report_of_a_missing_file_is_one_line(cluster: Cluster) -> None:
    res = run_cli("report", str(cluster.base / "nothing.json"))
    assert res.returncode == 11
    assert res.stderr == (f"ferryman: error: {cluster.base / 'nothing.json'}: no such file: "
                          "give the JSON file written by 'ferryman migrate --report FILE'\n")
