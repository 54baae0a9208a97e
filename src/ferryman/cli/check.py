"""``ferryman check``: can this workload move to that node, in which modes, and what to fix."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ferryman.cli.common import add_sync_option, parse_endpoint, synced_paths
from ferryman.errors import PreflightFailed, UsageError
from ferryman.migration.verdict import Status, Verdict
from ferryman.mode import MODES, Mode
from ferryman.paths import DEFAULT_STATE_DIR
from ferryman.safetext import printable

if TYPE_CHECKING:
    from ferryman.agent.role import SourceOptions

_MARK = {Status.PASS: "pass", Status.WARN: "WARN", Status.FAIL: "FAIL"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check", help="pre-flight: can a workload move to another node, and how",
        description="Ask both agents whether the workload can move to --to, in which modes, "
                    "and what to fix. Nothing is moved; the workload is frozen only for a "
                    "dry-run dump of a few tens of milliseconds. Exit 0 when it can move.")
    p.add_argument("pid", type=int, nargs="?", help="root PID of the process tree")
    p.add_argument("--runc", metavar="ID", help="a runc container instead of a PID")
    p.add_argument("--podman", metavar="NAME", help="a Podman container instead of a PID")
    p.add_argument("--runc-root", type=Path, default=Path("/run/runc"), metavar="DIR",
                   help="runc's state root (runc --root; default /run/runc)")
    p.add_argument("--to", required=True, metavar="IP:PORT", help="the destination agent")
    p.add_argument("--pki", required=True, type=Path, metavar="DIR", help="cluster PKI directory")
    p.add_argument("--name", required=True, help="this node's name (its certificate)")
    p.add_argument("--mode", type=Mode, choices=MODES,
                   help="the mode to check (default: any)")
    add_sync_option(p)
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help=f"where the dry-run log goes (default {DEFAULT_STATE_DIR})")
    p.add_argument("--criu", default="criu", help="criu binary (default: from PATH)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferryman.agent.checkrun import CheckOptions, run_check
    from ferryman.agent.role import SourceOptions
    from ferryman.pki import load_node

    if args.runc is not None:
        return _run_runc(args)
    if args.podman is not None:
        return _run_podman(args)
    if args.pid is None or args.pid <= 0:
        raise UsageError("give the root PID of the workload", hint="ferryman check PID --to ...")
    synced = synced_paths(args)
    host, port = parse_endpoint(args.to)
    creds = load_node(args.pki.resolve(), args.name)
    source = SourceOptions(pid=args.pid, host=host, port=port, creds=creds,
                           state_dir=args.state_dir.resolve(), criu_bin=args.criu)
    result = asyncio.run(run_check(CheckOptions(source, args.mode, synced)))
    v = result.verdict
    if args.json:
        dry = result.dry_run
        out = {"pid": args.pid, "destination": result.destination, "endpoint": args.to,
               **v.to_json(),
               "dry_run": None if dry is None else {
                   "ok": dry.ok, "freeze_ms": dry.freeze_ms, "reason": dry.reason,
                   "image_bytes": dry.image_bytes,
                   "log": str(dry.log_path) if not dry.ok else None},
               "link_bytes_per_s": result.link_bytes_per_s if result.link_timed else None}
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(printable(render(v, f"PID {args.pid} -> {result.destination} ({args.to})"),
                        keep_newlines=True))
        if result.link_timed:
            print(link_line(result.link_bytes_per_s, result.destination))
    if not v.can_move:
        failed = [r.check for r in v.failures(v.requested)]
        raise PreflightFailed(f"PID {args.pid} cannot move to {result.destination}"
                              + (f" in {v.requested} mode" if v.requested else ""),
                              failed=failed, hint="fix the FAIL rows above")
    return 0


def link_line(rate: float | None, destination: str) -> str:
    """The link test's line below the verdict."""
    from ferryman.agent.linkmemo import MAX_AGE_S

    said = f"{rate / 125_000:.0f} Mbit/s" if rate else "faster than the test can time"
    return (f"link to {printable(destination)}: {said} (migrations there in the next "
            f"{MAX_AGE_S / 60:.0f} minutes use it instead of timing it again)")


def _run_runc(args: argparse.Namespace) -> int:
    from ferryman.agent.runc_check import run_runc_check
    from ferryman.targets.runc import RuncTarget

    target = RuncTarget(args.runc, args.runc_root.resolve())
    return _run_container(args, "--runc ID", args.runc, "runc container",
                          lambda o: run_runc_check(target, o, args.mode))


def _run_podman(args: argparse.Namespace) -> int:
    from ferryman.agent.podman_check import run_podman_check
    from ferryman.targets.podman import PodmanTarget

    target = PodmanTarget(args.podman, args.runc_root.resolve())
    return _run_container(args, "--podman NAME", args.podman, "Podman container",
                          lambda o: run_podman_check(target, o, args.mode))


class _ContainerCheck(Protocol):
    @property
    def verdict(self) -> Verdict: ...

    @property
    def destination(self) -> str: ...


def _run_container(args: argparse.Namespace, flag: str, name: str, kind: str,
                   check: Callable[[SourceOptions], Coroutine[Any, Any, _ContainerCheck]]
                   ) -> int:
    """``check --runc`` / ``--podman``: the container's rows, printed; exit 40 if it cannot
    move."""
    from ferryman.agent.role import SourceOptions
    from ferryman.pki import load_node

    if args.pid is not None:
        raise UsageError(f"give either a PID or {flag}, not both",
                         hint="a container's processes move with it")
    host, port = parse_endpoint(args.to)
    creds = load_node(args.pki.resolve(), args.name)
    source = SourceOptions(pid=0, host=host, port=port, creds=creds,
                           state_dir=args.state_dir.resolve(), criu_bin=args.criu)
    result = asyncio.run(check(source))
    v = result.verdict
    if args.json:
        json.dump({"container": name, "destination": result.destination,
                   "endpoint": args.to, **v.to_json()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(printable(render(v, f"{kind} {name} -> {result.destination} ({args.to})"),
                        keep_newlines=True))
    if not v.can_move:
        raise PreflightFailed(f"container {name} cannot move to {result.destination}"
                              + (f" in {v.requested} mode" if v.requested else ""),
                              failed=[r.check for r in v.failures(v.requested)],
                              hint="fix the FAIL rows above")
    return 0


def render(v: Verdict, title: str) -> str:
    """The verdict as a table: one row per check, its fix on the next line."""
    width = max((len(r.check) for r in v.rows), default=5)
    lines = [f"pre-flight check: {title}",
             f"  {'':4}  {'side':<11}  {'check':<{width}}  result"]
    for r in v.rows:
        lines.append(f"  {_MARK[r.status]:<4}  {r.side:<11}  {r.check:<{width}}  {r.detail}")
        if r.status is not Status.PASS:
            scope = "" if set(r.modes) >= set(v.supported) else \
                f" [{', '.join(m for m in MODES if m in r.modes) or 'note only'}]"
            lines.append(f"  {'':4}  {'':11}  {'':<{width}}  fix: {r.fix}{scope}")
    allowed = ", ".join(v.allowed_modes) or "none"
    ruled_out = [m for m in v.supported if m not in v.allowed_modes]
    verdict = "CAN MOVE" if v.can_move else "CANNOT MOVE"
    if v.requested:
        verdict += f" in {v.requested} mode"
    lines.append(f"verdict: {verdict}; allowed modes: {allowed}"
                 + (f" (ruled out: {', '.join(ruled_out)})" if ruled_out else ""))
    warned = [m for m in v.allowed_modes if m not in v.clean_modes]
    if warned:
        lines.append(f"  with warnings in {', '.join(warned)}: 'ferryman migrate' needs --force")
    return "\n".join(lines)
