"""The Markdown report's S1 section: the memory writer's grid (mode x size x dirty rate)."""

from __future__ import annotations

from typing import Any

from bench.fmt import LABEL, floors, mib, ms, multiples, ratios, triple
from bench.stats import BASELINES, FERRYMAN, TOOLS

S1_NOTE = (
    "S1 (memory writer): the test workload (tests/support/workload.py) holds RSS in pages "
    "with a checked pattern, beats every 1 ms and rewrites `dirty pages/s` pages per second "
    "(spread over its heartbeats). downtime = its longest heartbeat gap (CLOCK_REALTIME; "
    "reset with SIGUSR2 just before migrating, read with SIGUSR1 on the destination "
    "afterwards, once every page is there; memory verified page by page: bad_pages must "
    "be 0). `criu restore` puts the tree into a new time namespace whose CLOCK_MONOTONIC "
    "resumes at a value read during the dump; that 'timens jump' (from "
    "/proc/PID/timens_offsets) is shown for information only.")
MOVED_NOTE = (
    "moved / RSS = bytes A sent on its interface during the migration (pages, images, "
    "protocol, TCP and TLS overhead; the same counter for every tool) plus, by hand, the "
    "image files it copied with `cp` on this host (a real `scp` would send them), over the "
    "workload's RSS. In brackets in the details: the tool's own count (ferryman's report "
    "bytes_transferred; by hand cold: the image directory on B).")
FERRYMAN_NOTE = (
    "ferryman total = wall time of the `ferryman migrate` command (Python start-up, mutual "
    "TLS hello, page server start, dump, transfer, restore, commit; post-copy: until the "
    "last page arrived); 'report' = ferryman's own report numbers (downtime_ms / total_ms).")
BY_HAND_NOTE = (
    "by hand = CRIU's commands as its documentation types them. cold: page server started "
    "on B beforehand (not counted), total = `criu dump` start to `criu restore -d` done. "
    "postcopy: `criu dump --lazy-pages` on A, images copied once it listens, `criu "
    "lazy-pages` started on B, `criu restore --lazy-pages -d`; total = dump start until the "
    "source dump exits (every page served). Remaining images copied with `cp` on the same "
    "host: a real `scp` adds an SSH connection (typically 0.1-0.3 s) plus the copy.")
TLS_NOTE = (
    "by hand = plain TCP page transfer, as CRIU's documentation types it; by hand TLS = the "
    "same with `--tls` and the cluster certificates (server side `--tls-no-cn-verify`). "
    "ferryman always uses CRIU's TLS, whose page path is several times slower than plain TCP.")
COMPLETE_NOTE = (
    "memory complete = post-copy only: from the workload running on B until every page has "
    "arrived (ferryman: report memory_complete_ms, the agent's clock on B; by hand: "
    "`criu restore -d` returned → the source `criu dump` exited). CRIU's lazy-mode "
    "stats-dump is garbage (docs/ARCHITECTURE.md, \"CRIU facts\"), so no CRIU stats are "
    "used there.")
FLOOR_NOTE = (
    "xTCP / xmemcpy = time / (RSS / bandwidth floor measured in this run), with the RSS of "
    "the cell's workload (S2: redis-server; S3: the echo server; S4: summed over the tree).")
# Notes for every report, and those only the S1 tables need.
TOOL_NOTES = [FERRYMAN_NOTE, TLS_NOTE, FLOOR_NOTE]
NOTES = [S1_NOTE, MOVED_NOTE, FERRYMAN_NOTE, BY_HAND_NOTE, TLS_NOTE, COMPLETE_NOTE,
         FLOOR_NOTE]


def memory_cells(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in result["cells"] if c.get("kind", "memory") == "memory"]


def _where(c: dict[str, Any]) -> str:
    return f"{c['mode']} | {c['size_mib']} MiB | {c.get('dirty_rate', 0)}"


def _steps(mode: str, t: dict[str, Any]) -> str:
    if mode == "postcopy":
        return (f"{ms(t['dump_ms'])} / {ms(t['copy_ms'])} / {ms(t['lazy_start_ms'])} / "
                f"{ms(t['restore_ms'])}")
    return f"{ms(t['dump_ms'])} / {ms(t['copy_ms'])} / {ms(t['restore_ms'])}"


def section(result: dict[str, Any]) -> list[str]:
    cells = memory_cells(result)
    if not cells:
        return []
    b1, b2 = (LABEL[b] for b in BASELINES)
    out = ["", "## S1: memory writer (median [min-max], ms; ratio = ferryman's median / "
           f"by hand's, shown as vs {b1} / vs {b2})", "",
           f"| mode | size | dirty pages/s | RSS MiB | downtime ferryman | {b1} | {b2} | ratio | "
           f"total ferryman | {b1} | {b2} | ratio | "
           f"memory complete ferryman | {b1} | {b2} | ratio |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        s = c["summary"]
        t, r = s["tools"], s["ratios"]
        out.append(f"| {_where(c)} | {mib(s['rss_bytes'])} | {triple(t, 'downtime_ms')} | "
                   f"{ratios(r, 'downtime')} | {triple(t, 'total_ms')} | "
                   f"{ratios(r, 'total')} | {triple(t, 'memory_complete_ms')} | "
                   f"{ratios(r, 'memory_complete')} |")
    who = " / ".join(LABEL[t] for t in TOOLS)
    out += ["", "## S1: bytes moved and physical floors (medians; each column: "
            f"{who})", "",
            "| mode | size | dirty pages/s | moved / RSS | floor TCP / memcpy, ms | "
            "total xTCP | total xmemcpy | downtime xTCP |",
            "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        s = c["summary"]
        out.append(f"| {_where(c)} | {multiples(s, 'moved_x_rss', 2)} | {floors(s)} | "
                   f"{multiples(s, 'total_x_tcp')} | {multiples(s, 'total_x_memcpy')} | "
                   f"{multiples(s, 'downtime_x_tcp')} |")
    out += ["", "## S1 details (medians [min-max], ms)", "",
            "| mode | size | dirty pages/s | tool | ok | downtime (timens jump) | "
            "report downtime / total | lazy pages | "
            "by hand: dump / cp / [lazy-pages start /] restore | "
            "by hand: lazy-pages exit after resume | MiB moved (tool's own count) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        s = c["summary"]
        for tool in TOOLS:
            t = s["tools"][tool]
            fm = tool == FERRYMAN
            hand = "" if fm else _steps(c["mode"], t)
            lazy_exit = "" if fm else ms(t.get("lazy_pages_exit_ms"))
            rep = f"{ms(t['report_downtime_ms'])} / {ms(t['report_total_ms'])}" if fm else ""
            pages = ms(t["lazy_pages"]) if fm else ""
            moved = t["moved_bytes"]["median"] if t.get("moved_bytes") else None
            own = t["bytes_moved"]["median"] if t["bytes_moved"] else None
            out.append(f"| {_where(c)} | {LABEL[tool]} | {s['n_ok'][tool]}/"
                       f"{s['n_runs'][tool]} | {ms(t['downtime_ms'])} "
                       f"({ms(t['timens_jump_ms'])}) | {rep} | {pages} | {hand} | "
                       f"{lazy_exit} | {mib(moved)} ({mib(own)}) |")
    return out

