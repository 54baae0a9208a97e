"""Write the results: JSON (raw runs + summary) and a Markdown table (also for stdout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.stats import DOWNTIME_GOAL, TOTAL_GOAL

NOTES = [
    "downtime = longest heartbeat gap the workload itself saw (1 ms heartbeat; reset with "
    "SIGUSR2 just before migrating, read with SIGUSR1 on the destination afterwards, memory "
    "verified page by page: bad_pages must be 0), measured on CLOCK_REALTIME: `criu restore` "
    "puts the restored tree into a new time namespace whose CLOCK_MONOTONIC resumes at the "
    "value the dump read near its end ('timens jump', from /proc/PID/timens_offsets, shown "
    "for information), so a monotonic heartbeat would understate the downtime by that much.",
    "ferryman total = wall time of the `ferryman migrate` command (Python start-up, mutual "
    "TLS hello, page server start on B, dump, transfer, restore, commit); 'report' = "
    "ferryman's own report numbers (downtime_ms / total_ms).",
    "by-hand total = from `criu dump` start to `criu restore -d` done; the page server was "
    "started beforehand (not counted). Its pages travel as plain TCP unless `--by-hand-tls` "
    "(ferryman always uses CRIU's TLS). "
    "Remaining images copied with `cp` on the same host: a real `scp` adds an SSH connection "
    "(typically 0.1-0.3 s) plus the copy.",
    "xTCP / xmemcpy = time / (workload RSS / bandwidth floor measured in this run).",
    f"goals: ferryman downtime <= {DOWNTIME_GOAL} x by hand, total <= {TOTAL_GOAL} x by hand "
    "(ratios of medians).",
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


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    floors = result["floors"]
    out = [f"# ferryman benchmark {result['started']}", ""]
    out.append(f"kernel {env.get('kernel')}, {env.get('criu')}, {env.get('cpus')} CPUs, "
               f"load average {env.get('load_start')} -> {env.get('load_end')}, "
               f"{result['runs']} runs per tool and cell, commit {env.get('commit')}, "
               f"by-hand page transfer {'TLS' if result.get('by_hand_tls') else 'plain TCP'}")
    out.append("")
    for f in floors.values():
        bw = f.get("bytes_per_s")
        val = f"{bw / 1e9:.2f} GB/s" if bw else f"failed: {f.get('error')}"
        out.append(f"- floor **{f['name']}**: {val} ({f['what']})")
    out += ["", "## ferryman vs. by hand (median [min-max], ms)", "",
            "| mode | size | RSS MiB | downtime ferryman | downtime by hand | ratio | "
            "total ferryman | total by hand | ratio | goals (down/total) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["cells"]:
        s = c["summary"]
        fm, bh = s["tools"]["ferryman"], s["tools"]["by-hand"]
        out.append(f"| {c['mode']} | {c['size_mib']} MiB | {_mib(s['rss_bytes'])} | "
                   f"{_ms(fm['downtime_ms'])} | {_ms(bh['downtime_ms'])} | "
                   f"{_x(s['ratios']['downtime'])} | {_ms(fm['total_ms'])} | "
                   f"{_ms(bh['total_ms'])} | {_x(s['ratios']['total'])} | "
                   f"{_ok(s['goals']['downtime'])} / {_ok(s['goals']['total'])} |")
    out += ["", "## Details (medians [min-max], ms)", "",
            "| mode | size | tool | ok | workload gap (timens jump) | report downtime | "
            "report total | by-hand dump / cp / restore | MiB moved | floor TCP / memcpy | "
            "total xTCP | total xmemcpy | downtime xTCP |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in result["cells"]:
        s = c["summary"]
        for tool in ("ferryman", "by-hand"):
            t = s["tools"][tool]
            m = s["multiples"][tool]
            hand = (f"{_ms(t['dump_ms'])} / {_ms(t['copy_ms'])} / {_ms(t['restore_ms'])}"
                    if tool == "by-hand" else "")
            rep_d = _ms(t.get("report_downtime_ms")) if tool == "ferryman" else ""
            rep_t = _ms(t.get("report_total_ms")) if tool == "ferryman" else ""
            fl = s["floors_ms"]
            floor = (f"{fl['tcp']:.0f} / {fl['memcpy']:.0f}"
                     if fl["tcp"] and fl["memcpy"] else "-")
            moved = t["bytes_moved"]["median"] if t["bytes_moved"] else None
            out.append(f"| {c['mode']} | {c['size_mib']} MiB | {tool} | "
                       f"{s['n_ok'][tool]}/{s['n_runs'][tool]} | "
                       f"{_ms(t['workload_max_gap_ms'])} ({_ms(t['timens_jump_ms'])}) | "
                       f"{rep_d} | {rep_t} | {hand} | "
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
    js.write_text(json.dumps(result, indent=2) + "\n")
    md.write_text(markdown(result))
    return js, md
