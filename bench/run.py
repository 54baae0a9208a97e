"""``python -m bench.run``: ferryman against the same migration by hand, plus physical floors.

Run from the repository root as root. Progress goes to stderr; the Markdown table goes to
stdout and, with the raw runs as JSON, to bench/results/<timestamp>.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from tests.support.netns import Topology

from bench import ferry, floors, report, shape
from bench.cell import TCP_MODES
from bench.env import Env
from bench.install import ensure_arping, ensure_redis, first_line
from bench.proc import PY, REPO, BenchError, say, sweep
from bench.redis import REDIS_KEYS, REDIS_MIB
from bench.scenarios import MODES, SCENARIOS, TOOLS, Cell, cells_for, run_cell
from bench.stats import summarize_cell

RESULTS = REPO / "bench" / "results"


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    defaults = "; ".join(f"{m.name} {','.join(map(str, m.default_sizes))}"
                         for m in MODES.values() if m.kind == "memory")
    ap.add_argument("--sizes", default=None,
                    help=f"S1: workload sizes in MiB for the cold and postcopy modes "
                         f"(default per mode: {defaults})")
    ap.add_argument("--rates", default=None,
                    help="S1: dirty rates in pages/s, one cell per size and rate "
                         "(default 0,1000,10000)")
    ap.add_argument("--runs", type=int, default=None,
                    help="repetitions per tool and cell (3; --quick: 1)")
    default_modes = [m for m in MODES if MODES[m].default]
    ap.add_argument("--modes", default=None,
                    help=f"modes: {','.join(MODES)} (default {','.join(default_modes)}; "
                         f"precopy needs soft-dirty tracking, i.e. the QEMU guests)")
    names = ", ".join(f"{k} = {'+'.join(v)}" for k, v in SCENARIOS.items())
    ap.add_argument("--scenarios", default=None,
                    help=f"the issue's scenario names ({names}), added to --modes")
    ap.add_argument("--echo-modes", default=None,
                    help="echo and runc-echo (S3): migration modes, cold,postcopy (default both)")
    ap.add_argument("--redis-modes", default=None,
                    help="redis (S2): migration modes, cold,postcopy (default both)")
    ap.add_argument("--redis-keys", type=int, default=REDIS_KEYS,
                    help="redis (S2): keys loaded before migrating (default %(default)s)")
    ap.add_argument("--procs", default=None,
                    help="tree (S4): process counts (default 1,10,100)")
    ap.add_argument("--tree-mib", type=int, default=MODES["tree"].default_sizes[0],
                    help="tree (S4): the root's MiB; each child holds MIB // children, "
                         "at least 1 (default %(default)s)")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help=f"{','.join(TOOLS)} (default all)")
    ap.add_argument("--quick", action="store_true",
                    help="one run per tool and cell and a 256 MiB TCP floor")
    ap.add_argument("--timeout", type=float, default=600, help="limit for every wait, s (600)")
    ap.add_argument("--tcp-mib", type=int, default=None,
                    help="TCP floor transfer size (1024; --quick: 256)")
    ap.add_argument("--memcpy-mib", type=int, default=256, help="memcpy floor size (256)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    ap.add_argument("--criu", default=shutil.which("criu") or "criu", help="criu binary")
    ap.add_argument("--source-agent", action=argparse.BooleanOptionalAction, default=True,
                    help="ferryman's commands go through an agent on A (started once), its "
                         "launcher starting them warm, as on every node of a deployment "
                         "('ferryman serve' runs on each; the default); --no-source-agent: "
                         "no agent on A, every command starts cold")
    ap.add_argument("--warm-state", action="store_true",
                    help="ferryman: one state dir on A for every run, as a node's "
                         "/var/lib/ferryman (CRIU's facts cached by the first run)")
    ap.add_argument("--serve-args", default="",
                    help="extra arguments for every `ferryman serve` on B, one string split "
                         "like a shell's (e.g. '--prefault on'); recorded in the results")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp dir (logs, and every run's CRIU images: mind the disk)")
    args = ap.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.tcp_mib is None:
        args.tcp_mib = 256 if args.quick else 1024
    try:
        args.sizes = [int(s) for s in _csv(args.sizes)] if args.sizes is not None else None
        args.procs = [int(s) for s in _csv(args.procs)] if args.procs is not None else None
        args.rates = [int(s) for s in _csv(args.rates)] if args.rates is not None else None
    except ValueError:
        ap.error(f"--sizes/--procs/--rates: not a list of integers: {args.sizes} / "
                 f"{args.procs} / {args.rates}")
    chosen = _csv(args.modes) if args.modes is not None else []
    if args.scenarios is not None:
        if unknown := [x for x in _csv(args.scenarios) if x.upper() not in SCENARIOS
                       and x not in MODES]:
            ap.error(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
        for x in _csv(args.scenarios):
            chosen += SCENARIOS.get(x.upper(), (x,))
    if args.modes is None and args.scenarios is None:
        chosen = default_modes
    if unknown := [m for m in chosen if m not in MODES]:
        ap.error(f"unknown mode(s) {unknown}; known: {list(MODES)}")
    args.modes = [m for m in MODES if m in chosen]  # each once, in the usual order
    args.echo_modes = _csv(args.echo_modes) if args.echo_modes is not None else None
    if bad := [m for m in args.echo_modes or [] if m not in MODES["echo"].migrations]:
        ap.error(f"--echo-modes: unknown {bad}; known: {list(MODES['echo'].migrations)}")
    args.redis_modes = _csv(args.redis_modes) if args.redis_modes is not None else None
    if bad := [m for m in args.redis_modes or [] if m not in MODES["redis"].migrations]:
        ap.error(f"--redis-modes: unknown {bad}; known: {list(MODES['redis'].migrations)}")
    if args.rates == [] or any(r < 0 for r in args.rates or []):
        ap.error("--rates must be 0 or more pages/s")
    if args.redis_keys < 1:
        ap.error("--redis-keys must be positive")
    args.tools = tuple(_csv(args.tools))
    if unknown := [t for t in args.tools if t not in TOOLS]:
        ap.error(f"unknown tool(s) {unknown}; known: {list(TOOLS)}")
    if args.runs < 1 or args.sizes == [] or any(s < 1 for s in args.sizes or []):
        ap.error("--runs and --sizes must be positive")
    if args.procs == [] or any(n < 1 for n in args.procs or []) or args.tree_mib < 1:
        ap.error("--procs and --tree-mib must be positive")
    if not args.modes or not args.tools:
        ap.error("no mode or no tool chosen")
    return args


def cells(args: argparse.Namespace) -> list[Cell]:
    out: list[Cell] = []
    for name in args.modes:
        mode = MODES[name]
        if mode.kind == "memory":
            out += cells_for(mode, sizes=args.sizes, rates=args.rates)
        elif mode.kind in ("echo", "runc-echo"):
            out += cells_for(mode, migrations=args.echo_modes)
        elif mode.kind == "redis":
            out += cells_for(mode, migrations=args.redis_modes)
        else:
            out += cells_for(mode, sizes=[args.tree_mib], procs=args.procs)
    return out


PIPE_MAX = Path("/proc/sys/fs/pipe-max-size")
PIPE_NEEDED = 4 << 20  # lazy pages without CAP_SYS_RESOURCE (docs/ARCHITECTURE.md, "CRIU facts")


def _pipe_max_size(raise_it: bool) -> int:
    """fs.pipe-max-size, raised to 4 MiB first when post-copy is to run."""
    try:
        value = int(PIPE_MAX.read_text())
        if raise_it and value < PIPE_NEEDED:
            say(f"sysctl fs.pipe-max-size={PIPE_NEEDED} (was {value}; CRIU's lazy pages need it)")
            PIPE_MAX.write_text(str(PIPE_NEEDED))
            value = int(PIPE_MAX.read_text())
    except (OSError, ValueError) as exc:
        say(f"cannot read/raise fs.pipe-max-size: {exc}")
        return 0
    return value


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _cell_mib(cell: Cell) -> int:
    """About what a cell's workload holds (tree: ~10 MiB of Python per process on top)."""
    if cell.mode in ("echo", "runc-echo", "podman-echo"):
        return 16
    if cell.mode in ("redis", "podman-redis", "shaped-redis"):
        return REDIS_MIB
    size = cell.size_mib or 0
    if cell.mode == "tree":
        return size + (cell.procs - 1) * max(1, size // max(cell.procs - 1, 1)) \
            + 10 * cell.procs
    return size


def _check_memory(size_mib: int, tmp: Path) -> None:
    """The workload briefly holds 2x its size while it starts; source + destination 2x.
    A cold run writes its pages to disk under ``tmp`` (deleted after each run)."""
    need = (size_mib << 20) * 5 // 2 + (1 << 30)
    have = _mem_available()
    if have < need:
        raise BenchError(f"needs ~{need >> 20} MiB free memory, {have >> 20} MiB available")
    disk_need = (size_mib << 20) * 2 + (1 << 30)
    disk = shutil.disk_usage(tmp).free
    if disk < disk_need:
        raise BenchError(f"needs ~{disk_need >> 20} MiB free disk in {tmp}, "
                         f"{disk >> 20} MiB free")


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _make_pki(topo: Topology, d: Path) -> None:
    for argv in (["pki", "init", str(d)],
                 *(["pki", "issue", n, "--pki", str(d), "--ip", topo[n].ip]
                   for n in topo.nodes)):
        res = subprocess.run([PY, "-m", "ferryman", *argv], capture_output=True, text=True,
                             timeout=60, cwd=REPO, check=False)
        if res.returncode != 0:
            raise BenchError(f"ferryman {' '.join(argv)} failed: {res.stderr.strip()}")


def _shape(topo: Topology, mbit: int, links: dict[int, floors.Floor],
           args: argparse.Namespace) -> float | None:
    """A's link shaped to ``mbit``; the TCP floor through it (measured once per rate, with
    at most 2 s of data at that rate) in ``links``, its bytes/s returned."""
    shape.shape(topo, mbit)
    if mbit not in links:
        mib = max(16, min(args.tcp_mib, mbit * 2 // 8))
        say(f"floor: TCP through A's link shaped to {mbit} Mbit/s, {mib} MiB")
        f = links[mbit] = floors.tcp(topo["a"], topo["b"], mib, timeout=args.timeout)
        say(f"  {(f.bytes_per_s or 0) * 8 / 1e6:.0f} Mbit/s achieved")
    return links[mbit].bytes_per_s


def _on_sigterm(_sig: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def bench(args: argparse.Namespace, tmp: Path, result: dict[str, Any]) -> None:
    """Everything that needs the nodes; raises only on set-up failure or interruption."""
    topo = None
    try:
        clients = any(m in TCP_MODES for m in args.modes)  # S2, S3: clients in node C
        names = ("a", "b", "c") if clients else ("a", "b")
        say(f"setting up namespace nodes {', '.join(names)} and a cluster PKI")
        topo = Topology(names)
        pki = tmp / "pki"
        _make_pki(topo, pki)
        env = Env(topo=topo, pki=pki, tmp=tmp, criu=args.criu, timeout=args.timeout,
                  keep_images=args.keep_tmp, warm_state=args.warm_state,
                  source_agent=args.source_agent, serve_args=tuple(shlex.split(args.serve_args)))
        result["environment"]["warm_state"] = args.warm_state
        result["environment"]["serve_args"] = list(env.serve_args)
        result["environment"]["source_agent"] = args.source_agent
        if clients:
            env.service = f"10.{topo.net}.0.100/24"
            env.garp = ensure_arping()
            result["environment"]["garp"] = env.garp
            result["environment"]["service"] = env.service
        if {"redis", "podman-redis", "shaped-redis"} & set(args.modes):
            result["environment"]["redis"] = ensure_redis()
            result["environment"]["redis_keys"] = env.redis_keys = args.redis_keys
        say(f"floor: memcpy {args.memcpy_mib} MiB")
        mem = floors.memcpy(args.memcpy_mib)
        say(f"floor: TCP {topo['a'].ip} → {topo['b'].ip}, {args.tcp_mib} MiB")
        tcp = floors.tcp(topo["a"], topo["b"], args.tcp_mib, timeout=args.timeout)
        result["floors"] = {"memcpy": mem.to_json(), "tcp": tcp.to_json()}
        say(f"  memcpy {(mem.bytes_per_s or 0) / 1e9:.2f} GB/s, "
            f"TCP {(tcp.bytes_per_s or 0) / 1e9:.2f} GB/s")
        # A process in A's network namespace for the wire-rate sampler (bench/wire.py).
        env.a_pid = topo["a"].popen("sleep", "infinity", stdin=subprocess.DEVNULL).pid
        links: dict[int, floors.Floor] = {}  # the TCP floor under each shaping
        for cell in cells(args):
            mode = MODES[cell.mode]
            entry: dict[str, Any] = {**cell.to_json(), "title": mode.title, "kind": mode.kind,
                                     "runs": []}
            result["cells"].append(entry)
            bps = tcp.bytes_per_s
            try:
                if cell.link_mbit:
                    ferry.forget_links(env)
                    bps = _shape(topo, cell.link_mbit, links, args)
                    entry["link_floor"] = links[cell.link_mbit].to_json()
                _check_memory(_cell_mib(cell), tmp)
                runs = run_cell(env, cell, args.runs, args.tools)
                entry["runs"] = [r.to_json() for r in runs]
            except Exception as exc:  # a broken cell must not stop the others
                say(f"  !! cell {cell.mode} {cell.label} failed: {exc}")
                result["errors"].append(f"{cell.mode} {cell.label}: {exc}")
            finally:
                if cell.link_mbit:
                    shape.unshape(topo)
                    ferry.forget_links(env)
            entry["summary"] = summarize_cell(entry["runs"], bps, mem.bytes_per_s, cell.mode)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop cleanup
        killed = sweep(str(tmp))
        if killed:
            say(f"cleanup: killed leftover processes {killed}")
        if topo is not None:
            topo.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        say("the benchmark needs root (CRIU, network namespaces)")
        return 2
    if shutil.which(args.criu) is None:
        say(f"{args.criu} not found: run 'make setup'")
        return 2
    os.chdir(REPO)  # workloads, agents and helpers run as `python -m …` from the repo root
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix="ferryman-bench-"))
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    plan = cells(args)
    pipe_max = _pipe_max_size(raise_it=any(c.migration == "postcopy" for c in plan))
    result: dict[str, Any] = {
        "started": stamp, "runs": args.runs, "quick": args.quick,
        "sizes_mib": {m: [c.size_mib for c in plan if c.mode == m]
                      for m in args.modes if MODES[m].kind == "memory"},
        "cells_planned": [c.to_json() for c in plan], "modes": args.modes,
        "tools": list(args.tools), "timeout_s": args.timeout, "interrupted": False,
        "errors": [], "floors": {}, "cells": [],
        "environment": {"kernel": os.uname().release, "criu": first_line(args.criu, "--version"),
                        "cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "commit": first_line("git", "rev-parse", "--short", "HEAD"),
                        "load_start": _load(), "pipe_max_size": pipe_max,
                        "mem_available_mib": _mem_available() >> 20,
                        "first_touch_start": floors.first_touch().bytes_per_s},
    }
    say(f"results will go to {args.out}/{stamp}.{{json,md}}; temp dir {tmp}")
    try:
        bench(args, tmp, result)
    except KeyboardInterrupt:
        result["interrupted"] = True
        result["errors"].append("interrupted")
        say("interrupted: cleaned up, writing partial results")
    except Exception as exc:
        result["errors"].append(f"set-up failed: {type(exc).__name__}: {exc}")
        say(f"!! set-up failed: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result["environment"]["load_end"] = _load()
    result["environment"]["first_touch_end"] = floors.first_touch().bytes_per_s
    for cell in result["cells"]:
        cell.setdefault("summary", summarize_cell(cell["runs"], None, None, cell["mode"]))
    js, md = report.write(result, args.out, stamp)
    print(report.markdown(result))
    say(f"wrote {js} and {md}")
    failed = result["errors"] or any(c["summary"]["errors"] for c in result["cells"])
    if result["interrupted"]:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
