"""The Markdown report's S2 section: redis-server under load, client gap and throughput."""

from __future__ import annotations

from typing import Any

from bench.fmt import LABEL, mib, multiples, ok_counts, ratios, triple
from bench.stats import BASELINES, TOOLS

NOTES = [
    "S2 (redis): redis-server (Debian package; no persistence) listens on the service "
    "address on A in its own PID namespace; `redis-cli --pipe` loads 10^6 keys "
    "(`key:%012d`, each value derived from its number). A load client in node C "
    "(bench/redisclient.py: 4 connections, 8 pipelined requests each, GET and SET of "
    "random keys, every GET checked against its key's value) runs 2 s before the migration "
    "and 2 s after it returned. client gap = the longest time in which no request completed "
    "on any connection. throughput = completed requests per second from the client's 10 ms "
    "timeline: before (0.5 s after it started until the migration started), during (the "
    "tool's own total: by hand from `criu dump`, without starting its page server before "
    "and waiting for arping after; post-copy: until the last page arrived), after (the "
    "last 2 s). redis-benchmark = `redis-benchmark -t get -r 10^6 -n 200000 -c 4 -P 16` from C, "
    "before the load client started (server on A) and after it stopped (on B). The run "
    "fails unless the connections survived with right answers, the address is on B only "
    "and, on B, DBSIZE is 10^6 and 1000 sampled keys hold their values. ferryman and by "
    "hand move the connections and the address as in S3 (`--tcp-established "
    "--move-address`; by hand: the same steps typed out).",
]


def _k(s: dict[str, Any] | None) -> str:
    return "-" if not s else f"{s['median'] / 1000:.0f}"


def section(result: dict[str, Any]) -> list[str]:
    cells = [c for c in result["cells"] if c["mode"] == "redis"]
    if not cells:
        return []
    b1, b2 = (LABEL[b] for b in BASELINES)
    who = " / ".join(LABEL[t] for t in TOOLS)
    n = result["environment"].get("redis_keys", 10**6)
    keys = "10^6" if n == 10**6 else str(n)
    out = ["", f"## S2: redis-server, {keys} keys, under load from node C (median [min-max], "
           f"ms; ratio vs {b1} / vs {b2})", "",
           f"| migration | ok | RSS MiB | client gap ferryman | {b1} | {b2} | ratio | "
           f"total ferryman | {b1} | {b2} | ratio | gap ended after start: ferryman | {b1} | "
           f"{b2} | total xTCP / xmemcpy ({who}) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        s = c["summary"]
        t, r = s["tools"], s["ratios"]
        out.append(f"| {c['migration']} | {ok_counts(s)} | {mib(s['rss_bytes'])} | "
                   f"{triple(t, 'downtime_ms')} | {ratios(r, 'downtime')} | "
                   f"{triple(t, 'total_ms')} | {ratios(r, 'total')} | "
                   f"{triple(t, 'client_gap_end_ms')} | {multiples(s, 'total_x_tcp')}; "
                   f"{multiples(s, 'total_x_memcpy')} |")
    out += ["", "S2 throughput, thousand requests/s (medians): load client before / during / "
            "after the migration; redis-benchmark GET before / after", "",
            "| migration | " + " | ".join(f"client: {LABEL[t]}" for t in TOOLS) + " | "
            + " | ".join(f"redis-benchmark: {LABEL[t]}" for t in TOOLS) + " |",
            "|---|" + "---|" * 2 * len(TOOLS)]
    for c in cells:
        t = c["summary"]["tools"]
        client = " | ".join(f"{_k(t[k]['rps_before'])} / {_k(t[k]['rps_during'])} / "
                            f"{_k(t[k]['rps_after'])}" for k in TOOLS)
        rb = " | ".join(f"{_k(t[k]['rb_get_rps_before'])} / {_k(t[k]['rb_get_rps_after'])}"
                        for k in TOOLS)
        out.append(f"| {c['migration']} | {client} | {rb} |")
    return out

