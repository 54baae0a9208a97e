"""Write the results: JSON (raw runs + summary) and a Markdown table (also for stdout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import report_podman, report_s1, report_s2, report_shaped
from bench.floors import FIRST_TOUCH_MIB
from bench.fmt import LABEL, mib, ms, multiples, ok_counts, ratios, triple, x
from bench.runcbox import TOOLS as RUNC_TOOLS
from bench.stats import BASELINES, BY_HAND, BY_HAND_TLS, FERRYMAN, TOOLS, goal_table, growth

WHO = " / ".join(LABEL[t] for t in TOOLS)
COLUMN = {FERRYMAN: "ferryman itself", BY_HAND: "vs by hand (plain TCP)",
          BY_HAND_TLS: "vs by hand (CRIU TLS)"}

NOTES = [
    "goals: ratios of medians, on S1's idle cells (dirty rate 0). Rows about ferryman alone "
    "are marked in 'ferryman itself'; the by-hand columns then show by hand's own value for "
    "reference (unmarked). Post-copy vs. cold: ferryman's post-copy downtime over "
    "ferryman's cold downtime ('ferryman itself') and over each baseline's cold downtime.",
]


GARP = {"arping": "iputils arping -U -c 2", "python": "bench/garp.py (arping missing)"}
ECHO_NOTES = [
    "S3 (echo): a TCP echo server (tests/support/echo.py) listens on a service address on A; "
    "a client in node C sends a numbered line every 10 ms and waits for each answer. client "
    "gap = the longest time between two answers the client saw (the server has no heartbeat "
    "of its own); it includes TCP's retransmission back-off in C when a request sent into the "
    "frozen window was dropped by CRIU's lock (resent at ~0.2, 0.6, 1.4, 3 s …; ferryman "
    "forwards such requests from A to B after the restore, by hand cannot), so it moves in "
    "steps. 'gap "
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
    "leaves its lock table (`inet CRIU-…`) on A: by hand it stays (ferryman removes its own "
    "since 2026-11-27-190059); the benchmark removes any and flushes every node's neighbour "
    "cache between runs.",
]
RUNC_NOTES = [
    "S3, container (runc-echo): the same service as a runc container (busybox-static "
    "rootfs, `nc -l -p 7000 -e cat`, in node A's network namespace, stdio as pipes; "
    "tests/support/bundle.py). Its bundle is in a directory node B does not see (B's "
    "commands and ferryman's agent there run in a mount namespace in which it is an empty "
    "tmpfs, in cgroups of their own, with a runc root of their own), so B gets its files "
    "only by copying them. ferryman: `ferryman migrate --runc ID --runc-root ROOT_A --mode "
    "M --tcp-established --move-address IP/24@eth0` (pre-sync rsync while running, final "
    "rsync while frozen). by hand (runc's own commands, bench/baseline_runc.py): `rsync -a` "
    "of the bundle to B while it runs; cold: `runc checkpoint --tcp-established "
    "--image-path D --work-path D`, `ip addr del` on A, `rsync -a` of the images and "
    "(`--delete`) the bundle, `ip addr add` on B, `runc restore -d --tcp-established "
    "--image-path --work-path --bundle`, `arping -U`; post-copy: `runc checkpoint "
    "--lazy-pages --page-server IP_A:PORT --status-fd FD` in the background, after its "
    "status byte the same address and copy steps, `criu lazy-pages --page-server --address "
    "IP_A --port PORT` on B, `runc restore -d --lazy-pages`, `arping -U`; total until `runc "
    "checkpoint` exited (every page served). 'dump' = `runc checkpoint` (post-copy: until "
    "its status byte), 'copy' = both rsyncs after it. The rsyncs run in B and read A's "
    "files through /proc/PID/root (one host; between machines rsync over SSH adds a "
    "connection). runc 1.1.5 has no TLS flags, so there is no by-hand-TLS run. ferryman's "
    "'report downtime' of a cold container included runc's clean-up after the commit "
    "(the container already ran on B then) until the fix after 2026-11-27-175911; the "
    "client gap never did.",
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


ECHO_TITLES = {
    "echo": "S3: TCP echo server, client in C every 10 ms",
    "runc-echo": "S3, container: the echo server as a runc container, client in C every 10 ms",
}


def _echo(result: dict[str, Any], mode: str, tools: tuple[str, ...] = TOOLS) -> list[str]:
    """The S3 table of ``mode`` (the echo process or container), for ``tools``."""
    cells = [c for c in result["cells"] if c["mode"] == mode]
    if not cells:
        return []
    bases = tuple(t for t in tools if t in BASELINES)
    names = [LABEL[b] for b in bases]
    who = " / ".join(LABEL[t] for t in tools)
    per_tool = " | ".join(names)
    dashes = "|---" * (12 + 4 * len(bases)) + "|"
    out = ["", f"## {ECHO_TITLES[mode]} (median [min-max], ms; ratio vs "
           f"{' / vs '.join(names)})", "",
           f"| migration | ok | client gap ferryman | {per_tool} | ratio | "
           f"total ferryman | {per_tool} | ratio | ferryman report downtime | "
           f"gap ended after start: ferryman | {per_tool} | "
           f"{names[0]}: ip addr del / ip addr add / ARP start | total xTCP; xmemcpy ({who}) "
           f"| memory complete ferryman | {per_tool} | {names[0]}: dump / copy / restore |",
           dashes]
    for c in cells:
        s = c["summary"]
        t, r = s["tools"], s["ratios"]
        bh = t[bases[0]]
        steps = (f"{ms(bh.get('addr_del_ms'))} / {ms(bh.get('addr_add_ms'))} / "
                 f"{ms(bh.get('garp_start_ms'))}")
        own = (f"{ms(bh.get('dump_ms'))} / {ms(bh.get('copy_ms'))} / "
               f"{ms(bh.get('restore_ms'))}")
        out.append(f"| {c['migration']} | {ok_counts(s, tools)} | "
                   f"{triple(t, 'downtime_ms', 0, tools)} | {ratios(r, 'downtime', bases)} | "
                   f"{triple(t, 'total_ms', 0, tools)} | {ratios(r, 'total', bases)} | "
                   f"{ms(t[FERRYMAN].get('report_downtime_ms'))} | "
                   f"{triple(t, 'client_gap_end_ms', 0, tools)} | {steps} | "
                   f"{multiples(s, 'total_x_tcp', 0, tools)}; "
                   f"{multiples(s, 'total_x_memcpy', 0, tools)} | "
                   f"{triple(t, 'memory_complete_ms', 0, tools)} | {own} |")
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
           f"total ferryman | {b1} | {b2} | ratio | total xTCP ({WHO}) | "
           f"total xmemcpy |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        s = c["summary"]
        t, r = s["tools"], s["ratios"]
        ok = ok_counts(s)
        out.append(f"| {c.get('procs')} | {ok} | {mib(s['rss_bytes'])} | "
                   f"{triple(t, 'downtime_ms')} | {ratios(r, 'downtime')} | "
                   f"{triple(t, 'freezing_time_ms', 1)} | {ratios(r, 'freezing_time')} | "
                   f"{triple(t, 'frozen_time_ms')} | "
                   f"{triple(t, 'total_ms')} | {ratios(r, 'total')} | "
                   f"{multiples(s, 'total_x_tcp')} | {multiples(s, 'total_x_memcpy')} |")
    rows = [(name, growth(result["cells"], "tree", metric)) for name, metric in
            (("downtime", "downtime_ms"), ("CRIU freezing", "freezing_time_ms"),
             ("total", "total_ms"))]
    if rows[0][1]:
        g = rows[0][1]
        out += ["", f"growth from {g['from']} to {g['to']} processes (median over median):",
                "", "| metric | " + " | ".join(LABEL[t] for t in TOOLS) + " |",
                "|---|" + "---|" * len(TOOLS)]
        for name, g in rows:
            out.append(f"| {name} | " + " | ".join(x(g["values"][t]) for t in TOOLS) + " |")
    return out


def _ok(v: bool | None) -> str:
    return "?" if v is None else ("✓" if v else "✗")


def _goal_value(v: dict[str, Any], unit: str = "x") -> str:
    value = ("-" if v["value"] is None else f"{v['value']:.0f} ms") if unit == "ms" \
        else x(v["value"])
    if v["reference"]:
        return "-" if v["value"] is None else f"({value} own)"
    return f"{value} {_ok(v['ok'])}"


def _goals(result: dict[str, Any]) -> list[str]:
    rows = goal_table(result["cells"])
    if not rows:
        return []
    cols = [t for t in TOOLS if any(t in r["values"] for r in rows)]
    out = ["", "## Goals", "", "| goal | " + " | ".join(COLUMN[c] for c in cols) + " |",
           "|---|" + "---|" * len(cols)]
    for r in rows:
        cells = [_goal_value(r["values"][c], r.get("unit", "x")) if c in r["values"] else ""
                 for c in cols]
        out.append(f"| {r['goal']} | " + " | ".join(cells) + " |")
    return out


def _gbs(bytes_per_s: float | None) -> str:
    return "?" if not bytes_per_s else f"{bytes_per_s / 1e9:.2f}"


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    floors = result["floors"]
    out = [f"# ferryman benchmark {result['started']}", ""]
    out.append(f"kernel {env.get('kernel')}, {env.get('criu')}, {env.get('cpus')} CPUs, "
               f"load average {env.get('load_start')} -> {env.get('load_end')}, "
               f"{result['runs']} runs per tool and cell, commit {env.get('commit')}, "
               f"fs.pipe-max-size {env.get('pipe_max_size', '?')}"
               + (f", first touch of {FIRST_TOUCH_MIB} MiB of free memory "
                  f"{_gbs(env['first_touch_start'])} "
                  f"-> {_gbs(env.get('first_touch_end'))} GB/s"
                  if env.get("first_touch_start") else "")
               + ("; ferryman's state dir on A: one for every run (--warm-state)"
                  if env.get("warm_state") else "")
               + ("; ferryman started through an agent on A, its launcher (--source-agent)"
                  if env.get("source_agent") else "")
               + (f"; B's agent: `ferryman serve … {' '.join(env['serve_args'])}`"
                  if env.get("serve_args") else "")
               + (f", S3 service address {env['service']}, by hand's gratuitous ARP: "
                  f"{GARP.get(env.get('garp', ''), env.get('garp'))}"
                  if env.get("service") else ""))
    out.append("")
    for f in floors.values():
        bw = f.get("bytes_per_s")
        val = f"{bw / 1e9:.2f} GB/s" if bw else f"failed: {f.get('error')}"
        out.append(f"- floor **{f['name']}**: {val} ({f['what']})")
    out += _goals(result)
    out += [*report_s1.section(result), *report_s2.section(result), *_echo(result, "echo"),
            *_echo(result, "runc-echo", RUNC_TOOLS), *report_podman.section(result),
            *report_shaped.section(result), *_tree(result)]
    errors = [f"- {c['mode']} {c.get('label') or c.get('size_mib')}: {e}"
              for c in result["cells"] for e in c["summary"]["errors"]]
    errors += [f"- {e}" for e in result.get("errors", [])]
    if errors:
        out += ["", "## FAILURES", "", *errors]
    modes = {c["mode"] for c in result["cells"]}
    notes = [*report_s1.TOOL_NOTES]
    if report_s1.memory_cells(result):
        notes = [*report_s1.NOTES, *NOTES]
    if "redis" in modes:
        notes += report_s2.NOTES
    if "echo" in modes or "runc-echo" in modes:
        notes += ECHO_NOTES
    if "runc-echo" in modes:
        notes += RUNC_NOTES
    if modes & set(report_podman.TITLES):
        notes += report_podman.NOTES
    if "tree" in modes:
        notes += TREE_NOTES
    if modes & {*report_shaped.SHAPED, "max-bandwidth"}:
        notes += report_shaped.NOTES
    out += ["", "## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report RESULTS.json``: the Markdown of a results file again (after
    a change to the tables), on stdout."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    ap.add_argument("results", type=Path, help="bench/results/<timestamp>.json")
    args = ap.parse_args(argv)
    try:
        result = json.loads(args.results.read_text())
        text = markdown(result)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bench.report: cannot render {args.results}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    print(text, end="")
    return 0


def write(result: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{stamp}.json"
    md = out_dir / f"{stamp}.md"
    result["goals"] = goal_table(result["cells"])
    js.write_text(json.dumps(result, indent=2) + "\n")
    md.write_text(markdown(result))
    return js, md


if __name__ == "__main__":
    raise SystemExit(main())
