"""Synthetic migration reports shaped like ``MigrationReport.to_json()``, numbers from real runs."""

from __future__ import annotations

from typing import Any

Report = dict[str, Any]

DUMP_STATS = {"freezing_time": 545, "frozen_time": 977465, "memdump_time": 538737,
              "memwrite_time": 525338, "pages_scanned": 67345, "pages_skipped_parent": 0,
              "pages_written": 67258, "pages_lazy": 0}
RESTORE_STATS = {"forking_time": 2, "restore_time": 155901, "pages_restored": 67258}


def _phases(*steps: tuple[str, float]) -> list[dict[str, float | str]]:
    out: list[dict[str, float | str]] = []
    t = 0.0
    for name, duration in steps:
        out.append({"phase": name, "start_ms": t, "duration_ms": duration})
        t += duration
    return out


def _base(mode: str, result: str) -> Report:
    return {
        "migration_id": "3f9c2a7e51d04b6c", "mode": mode, "source_node": "a",
        "destination": "10.77.0.2:7070", "source_pid": 4242, "result": result,
        "destination_node": "b", "destination_pid": None, "downtime_ms": None,
        "total_ms": 0.0, "bytes_transferred": 0, "image_bytes": 9310, "page_bytes": 0,
        "rss_bytes": 285450240, "memory_complete_ms": None, "lazy_pages": None,
        "criu": {}, "phases": [], "error": None,
        "logs": {"dump": "/var/lib/ferryman/migrations/3f9c2a7e51d04b6c/dump.log"},
        "destination_log_tail": "",
    }


def cold_committed() -> Report:
    r = _base("cold", "committed")
    r["phases"] = _phases(("HELLO", 274.2), ("PLANNED", 0.05), ("FREEZING", 833.25),
                          ("DUMPED", 0.13), ("TRANSFERRING", 1.86), ("AWAIT_RESTORE", 200.7),
                          ("COMMITTED", 20.72))
    r.update(destination_pid=4242, downtime_ms=1056.66, total_ms=1331.04,
             page_bytes=275488768, bytes_transferred=275498078,
             criu={"dump": dict(DUMP_STATS), "restore": dict(RESTORE_STATS)})
    return r


def rolled_back() -> Report:
    r = _base("cold", "rolled_back")
    r["phases"] = _phases(("HELLO", 268.0), ("PLANNED", 0.04), ("FREEZING", 420.5),
                          ("DUMPED", 0.1), ("TRANSFERRING", 1.2), ("AWAIT_RESTORE", 95.3),
                          ("RESUMING", 18.4))
    r.update(total_ms=803.5, page_bytes=69206016, bytes_transferred=69215326,
             rss_bytes=71303168,
             criu={"dump": {"freezing_time": 610, "frozen_time": 530112,
                            "memdump_time": 401220, "pages_written": 16896}},
             error="migration rolled back, workload still runs on the source: b: restore "
                   "failed: criu restore failed: Can't open file data.txt on restore",
             destination_log_tail="(00.012) Error (criu/files-reg.c:2120): Can't open file "
                                  "data.txt on restore: No such file or directory\n"
                                  "(00.012) Error (criu/cr-restore.c:1480): Restoring FAILED.\n")
    return r


def postcopy_committed() -> Report:
    r = _base("postcopy", "committed")
    r["phases"] = _phases(("HELLO", 271.0), ("PLANNED", 0.05), ("FREEZING", 64.2),
                          ("DUMPED", 0.1), ("TRANSFERRING", 2.1), ("AWAIT_RESTORE", 148.6),
                          ("COMMITTED", 16.9), ("SERVING_PAGES", 934.0))
    r.update(destination_pid=4242, downtime_ms=231.9, total_ms=1437.0,
             page_bytes=275488768, bytes_transferred=275498078, memory_complete_ms=912.0,
             lazy_pages=67258, criu={"restore": {"forking_time": 2, "restore_time": 41200}})
    return r


def precopy_committed() -> Report:
    r = _base("precopy", "committed")
    r["phases"] = _phases(("HELLO", 270.0), ("PLANNED", 0.05), ("PRESYNC", 12.0),
                          ("ITERATING", 812.0), ("ITERATING", 164.0), ("ITERATING", 41.0),
                          ("ITERATING", 12.5), ("FREEZING", 58.0), ("DUMPED", 0.1),
                          ("TRANSFERRING", 1.5), ("AWAIT_RESTORE", 152.0), ("COMMITTED", 18.0))
    r["iterations"] = [
        {"pages_written": 67258, "pages_skipped": 0, "seconds": 0.812, "bytes": 275488768},
        {"pages_written": 11840, "pages_skipped": 55418, "seconds": 0.164,
         "bytes": 11840 * 4096},
        {"pages_written": 2210, "pages_skipped": 65048, "seconds": 0.041, "bytes": 2210 * 4096},
        {"pages_written": 530, "pages_skipped": 66728, "seconds": 0.0125, "bytes": 530 * 4096},
    ]
    r.update(destination_pid=4242, downtime_ms=229.6, total_ms=1541.2,
             page_bytes=(67258 + 11840 + 2210 + 530 + 402) * 4096,
             criu={"dump": {"freezing_time": 480, "frozen_time": 49800, "memdump_time": 21400,
                            "pages_written": 402, "pages_skipped_parent": 66856},
                   "restore": dict(RESTORE_STATS)})
    r["bytes_transferred"] = r["page_bytes"] + r["image_bytes"]
    return r
