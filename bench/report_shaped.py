"""The Markdown report's shaped-link section (issue 17): A's link limited with tc, and
ferryman's own cap measured on the wire."""

from __future__ import annotations

from typing import Any

from bench.fmt import LABEL, mib, ms, ok_counts, ratios, triple
from bench.stats import BASELINES, FERRYMAN

SHAPED = ("shaped-redis", "shaped-random")
NOTES = [
    "Shaped link (issue 17): a `tc` token bucket (`tbf rate R burst max(256 KiB, 10 ms at "
    "R) latency 50ms`, bench/shape.py) at the root of both ends of A's veth pair (A's eth0 "
    "and its peer on the bridge), so A's link is R each way for every tool; 'link' = the "
    "TCP floor measured through it before the cell's first run (one stream A → B, at most "
    "2 s of data). shaped-redis: S2's redis-server (10^6 keys, under load from C, client "
    "gap as in S2); shaped-random: the memory writer with pseudo-random pages "
    "(`workload.py --fill random`, incompressible), downtime = its heartbeat gap.",
    "max-bandwidth: ferryman with `--max-bandwidth 200` (link not shaped) moving random "
    "pages cold. 'on the wire' = A's eth0 transmit counter read every 20 ms "
    "(`/proc/PID/net/dev` of a process in A's namespace): the rate between the samples at "
    "which 10% and 90% of the migration's bytes had gone (the pre-flight's and the "
    "restore's trickles at either end left out).",
]


def _link(c: dict[str, Any]) -> str:
    bps = (c.get("link_floor") or {}).get("bytes_per_s")
    return "-" if not bps else f"{bps * 8 / 1e6:.0f}"


def compression(c: dict[str, Any]) -> str:
    """ferryman's --compress choice in each run: ``on 5.1x`` / ``off``."""
    out = []
    for r in c.get("runs", []):
        if r.get("tool") != FERRYMAN or not r.get("ok"):
            continue
        comp = (r.get("details") or {}).get("compression") or {}
        ratio = comp.get("ratio")
        out.append("?" if not comp else "off" if not comp.get("on")
                   else f"on {ratio:.1f}x" if isinstance(ratio, int | float) else "on")
    return ", ".join(out) or "-"


def section(result: dict[str, Any]) -> list[str]:
    cells = [c for c in result["cells"] if c["mode"] in SHAPED]
    capped = [c for c in result["cells"] if c["mode"] == "max-bandwidth"]
    if not cells and not capped:
        return []
    b1, b2 = (LABEL[b] for b in BASELINES)
    out: list[str] = []
    if cells:
        out += ["", f"## Shaped link (median [min-max], ms; ratio vs {b1} / vs {b2})", "",
                f"| cell | link Mbit/s (TCP floor) | ok | RSS MiB | downtime ferryman | {b1} | "
                f"{b2} | ratio | total ferryman | {b1} | {b2} | ratio | wire MiB ferryman | "
                f"{b1} | {b2} | ferryman --compress auto chose |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in cells:
            s = c["summary"]
            t, r = s["tools"], s["ratios"]
            wire = " | ".join(mib((t[k].get("wire_bytes") or {}).get("median"))
                              for k in (FERRYMAN, *BASELINES))
            out.append(f"| {c['mode']} {c['label']} | {_link(c)} | {ok_counts(s)} | "
                       f"{mib(s['rss_bytes'])} | {triple(t, 'downtime_ms')} | "
                       f"{ratios(r, 'downtime')} | {triple(t, 'total_ms')} | "
                       f"{ratios(r, 'total')} | {wire} | {compression(c)} |")
    for c in capped:
        s = c["summary"]
        t = s["tools"][FERRYMAN]
        out += ["", f"## {c['mode']}: {c['label']}", "",
                "| ok | rate on the wire, Mbit/s | downtime ms | total ms | wire MiB | "
                "--compress auto chose |",
                "|---|---|---|---|---|---|",
                f"| {s['n_ok'][FERRYMAN]}/{s['n_runs'][FERRYMAN]} | "
                f"{ms(t.get('wire_mbit'))} | {ms(t.get('downtime_ms'))} | "
                f"{ms(t.get('total_ms'))} | {mib((t.get('wire_bytes') or {}).get('median'))} | "
                f"{compression(c)} |"]
    return out
