"""Write the results: JSON (raw runs + summary) and a Markdown table (also for stdout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.stats import BASELINES, BY_HAND, BY_HAND_TLS, FERRYMAN, TOOLS, goal_table, growth

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


GARP = {"arping": "iputils arping -U -c 2", "python": "bench/garp.py (arping missing)"}
ECHO_NOTES = [
    "S3 (echo): a TCP echo server (tests/support/echo.py) listens on a service address on A; "
    "a client in node C sends a numbered line every 10 ms and waits for each answer. client "
    "gap = the longest time between two answers the client saw (the server has no heartbeat "
    "of its own); it includes TCP's retransmission back-off in C (the request sent into the "
    "frozen window is retransmitted at ~0.2, 0.6, 1.4, 3 s …), so it moves in steps. 'gap "
    "ended' = when the longest gap ended, counted from the migration's start. total as for "
    "the other modes (by hand: until `criu restore -d` returned and the gratuitous ARP was "
    "started; post-copy: until the source dump exited). The run fails unless the client's "
    "connection survived (no error, no wrong answer, answers after the gap) and the "
    "address is on B only.",
    "S3 by hand needed, beyond `criu dump` / `criu restore` (ferryman does all of it itself, "
    "from `--tcp-established --move-address IP/24@eth0`): `--tcp-established` on both "
    "commands; a network-lock choice (by hand passes `--network-lock nftables` as ferryman "
    "does: CRIU's default iptables lock also works here, but `criu restore` logs "
    "'Iptables configuration failed'); `ip addr del IP/24 dev eth0` on A right after the "
    "dump (ferryman: in the frozen window, at CRIU's post-dump, and it puts the address "
    "back if the migration fails); `ip addr add IP/24 dev eth0` on B before `criu restore` "
    "(the restored sockets bind to it; ferryman's agent first checks that the address is not "
    "already there and that the device exists); a gratuitous ARP from B after the restore "
    "(`arping -U -c 2 -I eth0 IP`, Debian package iputils-arping, not installed by default: "
    "the benchmark installs it; ferryman sends its own over AF_PACKET), or clients keep "
    "sending to A's MAC until their neighbour entry times out. After a successful dump CRIU "
    "leaves its lock table (`inet CRIU-…`) on A with either tool; the benchmark removes it "
    "and flushes every node's neighbour cache between runs.",
]
TREE_NOTES = [
    "S4 (tree): the test workload with --children N-1 (the root holds the tree size and "
    "beats every 1 ms; each child holds size // children MiB, at least 1, and beats every "
    "10 ms), migrated cold. downtime = the root's longest heartbeat gap (CLOCK_REALTIME); "
    "CRIU freezing = `freezing_time` (seizing every task of the tree) and frozen = "
    "`frozen_time` from CRIU's dump statistics: ferryman's report `criu.dump`, by hand the "
    "`stats-dump` image (decoded with pycriu), µs shown as ms. Every process of the "
    "restored tree must be there and verify its memory (bad_pages 0). 'growth' = the median "
    "at the most processes over the median at the fewest.",
]


def _label(c: dict[str, Any]) -> str:
    label = c.get("label")
    return str(label) if label else f"{c.get('size_mib')} MiB"


def _memory_cells(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in result["cells"] if c.get("kind", "memory") == "memory"]


def _triple(t: dict[str, Any], metric: str, digits: int = 0) -> str:
    return " | ".join(_ms(t[tool].get(metric), digits) for tool in TOOLS)


def _ratios(r: dict[str, Any], key: str) -> str:
    return " / ".join(_x(r[b].get(key)) for b in BASELINES)


def _echo(result: dict[str, Any]) -> list[str]:
    cells = [c for c in result["cells"] if c["mode"] == "echo"]
    if not cells:
        return []
    b1, b2 = (LABEL[b] for b in BASELINES)
    out = ["", f"## S3: TCP echo server, client in C every 10 ms (median [min-max], ms; "
           f"ratio vs {b1} / vs {b2})", "",
           f"| migration | ok | client gap ferryman | {b1} | {b2} | ratio | "
           f"total ferryman | {b1} | {b2} | ratio | ferryman report downtime | "
           f"gap ended after start: ferryman | {b1} | {b2} | "
           f"{b1}: ip addr del / ip addr add / ARP start |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        s = c["summary"]
        t, r = s["tools"], s["ratios"]
        ok = " ".join(f"{s['n_ok'][tool]}/{s['n_runs'][tool]}" for tool in TOOLS)
        bh = t[BY_HAND]
        steps = (f"{_ms(bh.get('addr_del_ms'))} / {_ms(bh.get('addr_add_ms'))} / "
                 f"{_ms(bh.get('garp_start_ms'))}")
        out.append(f"| {c['migration']} | {ok} | {_triple(t, 'downtime_ms')} | "
                   f"{_ratios(r, 'downtime')} | {_triple(t, 'total_ms')} | "
                   f"{_ratios(r, 'total')} | {_ms(t[FERRYMAN].get('report_downtime_ms'))} | "
                   f"{_triple(t, 'client_gap_end_ms')} | {steps} |")
    return out


def _tree(result: dict[str, Any]) -> list[str]:
    cells = [c for c in result["cells"] if c["mode"] == "tree"]
    if not cells:
        return []
    b1, b2 = (LABEL[b] for b in BASELINES)
    out = ["", f"## S4: process trees, cold (median [min-max], ms; ratio vs {b1} / vs {b2})",
           "",
           f"| processes | ok | RSS MiB | downtime ferryman | {b1} | {b2} | ratio | "
           f"CRIU freezing ferryman | {b1} | {b2} | ratio | "
           f"CRIU frozen ferryman | {b1} | {b2} | "
           f"total ferryman | {b1} | {b2} | ratio |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        s = c["summary"]
        t, r = s["tools"], s["ratios"]
        ok = " ".join(f"{s['n_ok'][tool]}/{s['n_runs'][tool]}" for tool in TOOLS)
        out.append(f"| {c.get('procs')} | {ok} | {_mib(s['rss_bytes'])} | "
                   f"{_triple(t, 'downtime_ms')} | {_ratios(r, 'downtime')} | "
                   f"{_triple(t, 'freezing_time_ms', 1)} | {_ratios(r, 'freezing_time')} | "
                   f"{_triple(t, 'frozen_time_ms')} | "
                   f"{_triple(t, 'total_ms')} | {_ratios(r, 'total')} |")
    rows = [(name, growth(result["cells"], "tree", metric)) for name, metric in
            (("downtime", "downtime_ms"), ("CRIU freezing", "freezing_time_ms"),
             ("total", "total_ms"))]
    if rows[0][1]:
        g = rows[0][1]
        out += ["", f"growth from {g['from']} to {g['to']} processes (median over median):",
                "", "| metric | " + " | ".join(LABEL[t] for t in TOOLS) + " |",
                "|---|" + "---|" * len(TOOLS)]
        for name, g in rows:
            out.append(f"| {name} | " + " | ".join(_x(g["values"][t]) for t in TOOLS) + " |")
    return out


def _ms(s: dict[str, Any] | None, digits: int = 0) -> str:
    if not s:
        return "-"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


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
               f"fs.pipe-max-size {env.get('pipe_max_size', '?')}"
               + (f", S3 service address {env['service']}, by hand's gratuitous ARP: "
                  f"{GARP.get(env.get('garp', ''), env.get('garp'))}"
                  if env.get("service") else ""))
    out.append("")
    for f in floors.values():
        bw = f.get("bytes_per_s")
        val = f"{bw / 1e9:.2f} GB/s" if bw else f"failed: {f.get('error')}"
        out.append(f"- floor **{f['name']}**: {val} ({f['what']})")
    out += _goals(result)
    b1, b2 = (LABEL[b] for b in BASELINES)
    if not _memory_cells(result):
        return _tail(result, out)
    out += ["", "## ferryman vs. by hand (median [min-max], ms; ratio = ferryman's median / "
            f"by hand's, shown as vs {b1} / vs {b2})", "",
            f"| mode | size | RSS MiB | downtime ferryman | {b1} | {b2} | ratio | "
            f"total ferryman | {b1} | {b2} | ratio | "
            f"memory complete ferryman | {b1} | {b2} | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in _memory_cells(result):
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
    for c in _memory_cells(result):
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
    return _tail(result, out)


def _tail(result: dict[str, Any], out: list[str]) -> str:
    """S3 and S4 sections, failures and notes."""
    out = [*out, *_echo(result), *_tree(result)]
    errors = [f"- {c['mode']} {_label(c)}: {e}" for c in result["cells"]
              for e in c["summary"]["errors"]]
    errors += [f"- {e}" for e in result.get("errors", [])]
    if errors:
        out += ["", "## FAILURES", "", *errors]
    # without memory cells: the notes on ferryman's total and on the two baselines
    notes = NOTES if _memory_cells(result) else [NOTES[1], NOTES[3]]
    if any(c["mode"] == "echo" for c in result["cells"]):
        notes = [*notes, *ECHO_NOTES]
    if any(c["mode"] == "tree" for c in result["cells"]):
        notes = [*notes, *TREE_NOTES]
    out += ["", "## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(out)


def write(result: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{stamp}.json"
    md = out_dir / f"{stamp}.md"
    result["goals"] = goal_table(result["cells"])
    js.write_text(json.dumps(result, indent=2) + "\n")
    md.write_text(markdown(result))
    return js, md
