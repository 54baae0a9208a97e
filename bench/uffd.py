"""Pre-copy with the uffd-wp tracker on this host (no soft-dirty): ``python -m bench.uffd``.

Issue 15's cell, between namespace nodes A and B on this machine (real agents, real criu with
the uffd-track-mem patch):

* **downtime**: the test workload (``--mib`` MiB, writing ``--rate`` pages per second)
  moved ``--runs`` times each by ``--mode cold`` and by ``--mode precopy --no-postcopy``
  (budget policy, 300 ms), alternating; ferryman's ``downtime_ms``, the pre-dumps' pages and
  the final dump's; every page verified on B.
* **write cost**: what the write-protect faults cost a workload. A C loop writes one byte
  per page, page after page, over a ``--cost-mib`` MiB buffer. Fault cost: a sweep over all
  pages just after they were protected (each write takes a fault) against a sweep before,
  per page, median of 7. Then writes/s for ``--cost-seconds``: untracked, and tracked with
  every page protected again every 1 s and every 0.1 s (what a pre-dump does at the end of
  each iteration: the worst case, a workload that rewrites all its memory continuously).

Writes ``bench/results/<date>-uffd.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.netns import Topology
from tests.support.workloads import start_workload

from bench.env import Env
from bench.ferry import run as ferry_run
from bench.proc import BenchError, say
from bench.run import _make_pki

RESULTS = Path(__file__).resolve().parent / "results"
MODES = {"cold": ["--mode", "cold"], "precopy": ["--mode", "precopy", "--no-postcopy"]}
TASK_END = 0x7FFFFFFFF000
WRITER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                          return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    size_t pages = (size_t)atol(argv[1]) * 256; double secs = atof(argv[2]);
    volatile char *m = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    memset((char *)m, 1, pages * 4096);
    printf("ready\n"); fflush(stdout);
    char go;
    /* 's': one sweep, one write per page; its time. 'g': the timed loop below */
    while (read(0, &go, 1) == 1 && go == 's') {
        double s0 = now();
        for (size_t p = 0; p < pages; p++) m[p * 4096]++;
        printf("%.9f\n", now() - s0); fflush(stdout);
    }
    unsigned long long n = 0; double t0 = now(), t;
    do { for (int k = 0; k < 4096; k++) { m[(n % pages) * 4096] = (char)n; n++; } }
    while ((t = now()) - t0 < secs);
    printf("%.0f\n", n / (t - t0)); fflush(stdout);
    return 0;
}
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.uffd", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="workload size in MiB (1024)")
    ap.add_argument("--rate", type=int, default=100, help="dirty pages per second (100)")
    ap.add_argument("--runs", type=int, default=2, help="runs per mode (2)")
    ap.add_argument("--cost-mib", type=int, default=256, help="write-cost buffer, MiB (256)")
    ap.add_argument("--cost-seconds", type=float, default=3.0, help="per write-cost run (3)")
    ap.add_argument("--skip-migrations", action="store_true", help="only the write cost")
    ap.add_argument("--timeout", type=float, default=900, help="limit for every wait, s")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    return ap.parse_args(argv)


def migrations(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    topo = Topology(("a", "b"))
    runs: list[dict[str, Any]] = []
    try:
        pki = tmp / "pki"
        _make_pki(topo, pki)
        env = Env(topo=topo, pki=pki, tmp=tmp, criu=shutil.which("criu") or "criu",
                  timeout=args.timeout)
        for k in range(1, args.runs + 1):
            for mode, mode_args in MODES.items():
                runs.append(_one(env, args, tmp / f"{mode}-{k}", mode, mode_args))
                r = runs[-1]
                say(f"{mode} run {k}: downtime {r['downtime_ms']:.0f} ms, pre-dumps "
                    f"{r['iterations']}, final {r['final_pages']} pages, bad pages "
                    f"{r['bad_pages']}")
    finally:
        topo.close()
    return runs


def _one(env: Env, args: argparse.Namespace, run_dir: Path, mode: str,
         mode_args: list[str]) -> dict[str, Any]:
    run_dir.mkdir(parents=True)
    w = start_workload(env.topo["a"], run_dir / "status.json", mib=args.mib,
                       seed=f"bench-uffd-{run_dir.name}", dirty_rate=args.rate,
                       heartbeat_ms=10, timeout=args.timeout)
    restored: list[int] = []
    try:
        out = ferry_run(env, run_dir, restored, [str(w.pid)], mode_args)
        report = json.loads((run_dir / "report.json").read_text())
        st = w.status(restored[0], timeout=args.timeout)
        its = report.get("iterations") or []
        return {"mode": mode, "downtime_ms": report["downtime_ms"], "total_ms": out.total_ms,
                "iterations": [int(i["pages_written"]) for i in its],
                "final_pages": report.get("final_pages"),
                "dirty_tracker": report.get("dirty_tracker"),
                "predicted_ms": report.get("predicted_downtime_ms"),
                "bad_pages": st["bad_pages"], "convergence": report.get("convergence")}
    finally:
        w.kill(restored[0] if restored else None)
        shutil.rmtree(run_dir / "state-a", ignore_errors=True)
        shutil.rmtree(run_dir / "agent-b", ignore_errors=True)


def _protect(pid: int) -> None:
    from ferryman.host import uffd

    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        uffd.scan(fd, 0, TASK_END, category_mask=uffd.PAGE_IS_WRITTEN,
                  return_mask=uffd.PAGE_IS_WRITTEN, flags=uffd.PM_SCAN_WP_MATCHING)
    finally:
        os.close(fd)


def _fault_cost(exe: Path, mib: int, rounds: int = 7) -> float:
    """Microseconds a write-protect fault adds to a write (see the module doc)."""
    from ferryman.host.wptrack import WriteTracker

    proc = subprocess.Popen([str(exe), str(mib), "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    assert proc.stdout is not None
    tracker = WriteTracker()

    def sweep() -> float:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write("s")
        proc.stdin.flush()
        return float(proc.stdout.readline())

    extra = []
    try:
        if proc.stdout.readline().strip() != "ready":
            raise BenchError("the writer did not start")
        tracker.arm([proc.pid])
        for _ in range(rounds):
            sweep()  # unprotects what is left
            plain = sweep()
            _protect(proc.pid)
            extra.append((sweep() - plain) / (mib * 256) * 1e6)
    finally:
        tracker.close()
        proc.kill()
        proc.wait()
    return statistics.median(extra)


def write_cost(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from ferryman.host.wptrack import WriteTracker

    exe = tmp / "writer"
    (tmp / "writer.c").write_text(WRITER_C)
    subprocess.run(["cc", "-O2", "-o", str(exe), str(tmp / "writer.c")], check=True)
    result: dict[str, Any] = {"mib": args.cost_mib, "seconds": args.cost_seconds,
                              "fault_us": _fault_cost(exe, args.cost_mib)}
    say(f"write cost: {result['fault_us']:.2f} us per write-protect fault")
    for label, every in (("untracked", None), ("tracked, re-protected every 1 s", 1.0),
                         ("tracked, re-protected every 0.1 s", 0.1)):
        proc = subprocess.Popen([str(exe), str(args.cost_mib), str(args.cost_seconds)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        assert proc.stdout is not None
        tracker = WriteTracker()
        protections = 0
        try:
            if proc.stdout.readline().strip() != "ready":
                raise BenchError("the writer did not start")
            if every is not None:
                tracker.arm([proc.pid])
                _protect(proc.pid)
            proc.stdin.write("g")
            proc.stdin.flush()
            t_end = time.monotonic() + args.cost_seconds
            while every is not None and time.monotonic() + every < t_end:
                time.sleep(every)
                _protect(proc.pid)
                protections += 1
            rate = float(proc.stdout.readline())
        finally:
            tracker.close()
            proc.kill()
            proc.wait()
        result[label] = {"writes_per_s": rate, "protections": protections + (every is not None)}
        say(f"write cost, {label}: {rate / 1e6:.1f} M writes/s")
    base = result["untracked"]["writes_per_s"]
    pages = args.cost_mib * 256
    for label in ("tracked, re-protected every 1 s", "tracked, re-protected every 0.1 s"):
        r = result[label]
        r["ratio"] = r["writes_per_s"] / base
        # every protection costs one fault per page at the next sweep (sweeps are faster
        # than any interval here): the time lost, spread over those faults
        lost_s = args.cost_seconds * (1 - r["ratio"])
        r["lost_per_page_us"] = lost_s / (r["protections"] * pages) * 1e6
    return result


def markdown(meta: dict[str, Any], runs: list[dict[str, Any]], cost: dict[str, Any]) -> str:
    out = [f"# Pre-copy with the uffd-wp tracker, this host - {meta['date']}", "",
           f"Kernel {meta['kernel']} (no soft-dirty), namespace nodes, real agents and criu "
           f"(--track-mem-uffd). {meta['mib']} MiB workload writing {meta['rate']} pages/s, "
           f"{meta['runs']} runs per mode; every page verified on B.", ""]
    if runs:
        out += ["| mode | downtime (median, range) | pre-dumps: pages written | final dump "
                "pages | final ÷ first pre-dump | predicted | bad pages |",
                "|---|---|---|---|---|---|---|"]
        for mode in MODES:
            rs = [r for r in runs if r["mode"] == mode]
            d = [r["downtime_ms"] for r in rs]
            fin = [r["final_pages"] for r in rs]
            share = [f"{r['final_pages'] / r['iterations'][0] * 100:.2f} %"
                     for r in rs if r["iterations"] and r["final_pages"] is not None]
            pred = [r["predicted_ms"] for r in rs if r["predicted_ms"] is not None]
            out.append(f"| {mode} | {statistics.median(d):.0f} ms ({min(d):.0f}-{max(d):.0f}) | "
                       f"{'; '.join(str(r['iterations']) for r in rs) or '-'} | {fin} | "
                       f"{', '.join(share) or '-'} | "
                       f"{', '.join(f'{p:.0f} ms' for p in pred) or '-'} | "
                       f"{[r['bad_pages'] for r in rs]} |")
        cold = statistics.median(r["downtime_ms"] for r in runs if r["mode"] == "cold")
        pre = statistics.median(r["downtime_ms"] for r in runs if r["mode"] == "precopy")
        out += ["", f"Pre-copy downtime ÷ cold: **{pre / cold:.2f}x** (goal ≤ 0.3x); final "
                "dump ÷ first pre-dump: goal ≤ 2 %.", ""]
    if cost:
        base = cost["untracked"]["writes_per_s"]
        out += [f"Write cost: a C loop writing one byte per page over {cost['mib']} MiB. "
                f"A write-protect fault adds **{cost['fault_us']:.2f} µs** to a write (a "
                "sweep just after protection against one before, median of 7). Writes/s, "
                f"{cost['seconds']:.0f} s per run:", "",
                "| | writes/s | ÷ untracked | time lost per page and protection |",
                "|---|---|---|---|",
                f"| untracked | {base / 1e6:.1f} M | 1 | - |"]
        for label in ("tracked, re-protected every 1 s", "tracked, re-protected every 0.1 s"):
            r = cost[label]
            out.append(f"| {label} | {r['writes_per_s'] / 1e6:.1f} M | {r['ratio']:.2f} | "
                       f"{r['lost_per_page_us']:.2f} µs |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench.uffd: run as root (namespaces, criu, ptrace)", file=sys.stderr)
        return 2
    t0 = time.time()
    date = time.strftime("%Y-%m-%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-uffd-", dir="/var/tmp") as d:
        tmp = Path(d)
        runs = [] if args.skip_migrations else migrations(args, tmp)
        cost = write_cost(args, tmp)
    meta = {"date": date, "kernel": os.uname().release, "mib": args.mib, "rate": args.rate,
            "runs": args.runs, "seconds": time.time() - t0}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{date}-uffd.json").write_text(json.dumps(
        {"meta": meta, "runs": runs, "write_cost": cost}, indent=1) + "\n")
    md = markdown(meta, runs, cost)
    (args.out / f"{date}-uffd.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
