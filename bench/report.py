"""Write the results: JSON (raw runs + summary) and a Markdown table (also for stdout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.stats import BASELINES, BY_HAND, BY_HAND_TLS, FERRYMAN, TOOLS, goal_table

LABEL = {FERRYMAN: "ferryman", BY_HAND: "by hand", BY_HAND_TLS: "by hand TLS"}
COLUMN = {FERRYMAN: "ferryman itself", BY_HAND: "vs by hand (plain TCP)",
          BY_HAND_TLS: "vs by hand (CRIU TLS)"}

NOTES = [
    "downtime = longest heartbeat gap the workload itself saw (1 ms heartbeat on "
    "CLOCK_REALTIME; reset with SIGUSR2 just before migrating, read with SIGUSR1 on the "
    "destination afterwards, once every page is there; memory verified page by page: "
    "bad_pages must be 0). `criu restore` puts the tree into a new time namespace whose "
    "CLOCK_MONOTONIC resumes at a value read during the dump; that 'timens jump' (from "
    "/proc/PID/timens_offsets) is shown for information only.",
    "ferryman total = wall time of the `ferryman migrate` command (Python start-up, mutual "
    "TLS hello, page server start, dump, transfer, restore, commit; post-copy: until the "
    "last page arrived); 'report' = ferryman's own report numbers (downtime_ms / total_ms).",
    "by hand = CRIU's commands as its documentation types them. cold: page server started "
    "on B beforehand (not counted), total = `criu dump` start to `criu restore -d` done. "
    "postcopy: `criu dump --lazy-pages` on A, images copied once it listens, `criu "
    "lazy-pages` started on B, `criu restore --lazy-pages -d`; total = dump start until the "
    "source dump exits (every page served). Remaining images copied with `cp` on the same "
    "host: a real `scp` adds an SSH connection (typically 0.1-0.3 s) plus the copy.",
    "by hand = plain TCP page transfer, as CRIU's documentation types it; by hand TLS = the "
    "same with `--tls` and the cluster certificates (server side `--tls-no-cn-verify`). "
    "ferryman always uses CRIU's TLS, whose page path is several times slower than plain TCP.",
    "memory complete = post-copy only: from the workload running on B until every page has "
    "arrived (ferryman: report memory_complete_ms, the agent's clock on B; by hand: "
    "`criu restore -d` returned → the source `criu dump` exited). CRIU's lazy-mode "
    "stats-dump is garbage (DESIGN.md), so no CRIU stats are used there.",
    "xTCP / xmemcpy = time / (workload RSS / bandwidth floor measured in this run).",
    "goals: ratios of medians. Rows about ferryman alone are marked in 'ferryman itself'; "
    "the by-hand columns then show by hand's own value for reference (unmarked). Post-copy "
    "vs. cold: ferryman's post-copy downtime over ferryman's cold downtime ('ferryman "
    "itself') and over each baseline's cold downtime.",
]


def _ms(s: dict[str, Any] | None) -> str:
    if not s:
        return "-"
    if s["n"] == 1:
        return f"{s['median']:.0f}"
    return f"{s['median']:.0f} [{s['min']:.0f}-{s['max']:.0f}]"


def _x(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}x"


def _ok(v: bool | None) -> str:
    return "?" if v is None else ("✓" if v else "✗")


def _mib(v: float | int | None) -> str:
    return "-" if v is None else f"{v / (1 << 20):.0f}"


def _goal_value(v: dict[str, Any]) -> str:
    if v["reference"]:
        return "-" if v["value"] is None else f"({_x(v['value'])} own)"
    return f"{_x(v['value'])} {_ok(v['ok'])}"


def _goals(result: dict[str, Any]) -> list[str]:
    rows = goal_table(result["cells"])
    if not rows:
        return []
    cols = [t for t in TOOLS if any(t in r["values"] for r in rows)]
    out = ["", "## Goals", "", "| goal | " + " | ".join(COLUMN[c] for c in cols) + " |",
           "|---|" + "---|" * len(cols)]
    for r in rows:
        cells = [_goal_value(r["values"][c]) if c in r["values"] else "" for c in cols]
        out.append(f"| {r['goal']} | " + " | ".join(cells) + " |")
    return out


def _steps(mode: str, t: dict[str, Any]) -> str:
    if mode == "postcopy":
        return (f"{_ms(t['dump_ms'])} / {_ms(t['copy_ms'])} / {_ms(t['lazy_start_ms'])} / "
                f"{_ms(t['restore_ms'])}")
    return f"{_ms(t['dump_ms'])} / {_ms(t['copy_ms'])} / {_ms(t['restore_ms'])}"


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    floors = result["floors"]
    out = [f"# ferryman benchmark {result['started']}", ""]
    out.append(f"kernel {env.get('kernel')}, {env.get('criu')}, {env.get('cpus')} CPUs, "
               f"load average {env.get('load_start')} -> {env.get('load_end')}, "
               f"{result['runs']} runs per tool and cell, commit {env.get('commit')}, "
               f"fs.pipe-max-size {env.get('pipe_max_size', '?')}")
    out.append("")
    for f in floors.values():
        bw = f.get("bytes_per_s")
        val = f"{bw / 1e9:.2f} GB/s" if bw else f"failed: {f.get('error')}"
        out.append(f"- floor **{f['name']}**: {val} ({f['what']})")
    out += _goals(result)
    b1, b2 = (LABEL[b] for b in BASELINES)
    out += ["", "## ferryman vs. by hand (median [min-max], ms; ratio = ferryman's median / "
            f"by hand's, shown as vs {b1} / vs {b2})", "",
            f"| mode | size | RSS MiB | downtime ferryman | {b1} | {b2} | ratio | "
            f"total ferryman | {b1} | {b2} | ratio | "
            f"memory complete ferryman | {b1} | {b2} | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["cells"]:
        s = c["summary"]
        t = s["tools"]
        r = s["ratios"]

        def row(metric: str, ratio_key: str, t: dict[str, Any] = t, r: dict[str, Any] = r
                ) -> str:
            vals = " | ".join(_ms(t[tool][metric]) for tool in TOOLS)
            rat = " / ".join(_x(r[b][ratio_key]) for b in BASELINES)
            return f"{vals} | {rat}"

        out.append(f"| {c['mode']} | {c['size_mib']} MiB | {_mib(s['rss_bytes'])} | "
                   f"{row('downtime_ms', 'downtime')} | {row('total_ms', 'total')} | "
                   f"{row('memory_complete_ms', 'memory_complete')} |")
    out += ["", "## Details (medians [min-max], ms)", "",
            "| mode | size | tool | ok | downtime (timens jump) | report downtime / total | "
            "lazy pages | by hand: dump / cp / [lazy-pages start /] restore | "
            "by hand: lazy-pages exit after resume | MiB moved | floor TCP / memcpy | "
            "total xTCP | total xmemcpy | downtime xTCP |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["cells"]:
        s = c["summary"]
        for tool in TOOLS:
            t = s["tools"][tool]
            m = s["multiples"][tool]
            fm = tool == FERRYMAN
            hand = "" if fm else _steps(c["mode"], t)
            lazy_exit = "" if fm else _ms(t.get("lazy_pages_exit_ms"))
            rep = f"{_ms(t['report_downtime_ms'])} / {_ms(t['report_total_ms'])}" if fm else ""
            pages = _ms(t["lazy_pages"]) if fm else ""
            fl = s["floors_ms"]
            floor = (f"{fl['tcp']:.0f} / {fl['memcpy']:.0f}"
                     if fl["tcp"] and fl["memcpy"] else "-")
            moved = t["bytes_moved"]["median"] if t["bytes_moved"] else None
            out.append(f"| {c['mode']} | {c['size_mib']} MiB | {LABEL[tool]} | "
                       f"{s['n_ok'][tool]}/{s['n_runs'][tool]} | "
                       f"{_ms(t['downtime_ms'])} ({_ms(t['timens_jump_ms'])}) | "
                       f"{rep} | {pages} | {hand} | {lazy_exit} | "
                       f"{_mib(moved)} | {floor} | {_x(m['total_x_tcp'], 1)} | "
                       f"{_x(m['total_x_memcpy'], 1)} | {_x(m['downtime_x_tcp'], 1)} |")
    errors = [f"- {c['mode']} {c['size_mib']} MiB: {e}" for c in result["cells"]
              for e in c["summary"]["errors"]]
    errors += [f"- {e}" for e in result.get("errors", [])]
    if errors:
        out += ["", "## FAILURES", "", *errors]
    out += ["", "## Notes", "", *[f"- {n}" for n in NOTES], ""]
    return "\n".join(out)


def write(result: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{stamp}.json"
    md = out_dir / f"{stamp}.md"
    result["goals"] = goal_table(result["cells"])
    js.write_text(json.dumps(result, indent=2) + "\n")
    md.write_text(markdown(result))
    return js, md
