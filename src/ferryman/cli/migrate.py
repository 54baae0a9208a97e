"""``ferryman migrate``: move a process tree (or a runc or Podman container) to another node."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ferryman.cli import launch
from ferryman.cli.common import add_sync_option, parse_endpoint, synced_paths
from ferryman.criu.pacing import check_max_bandwidth, require_pacing
from ferryman.errors import FerrymanError, UsageError
from ferryman.host.addresses import MoveAddress, parse_move_address
from ferryman.migration.compress import Compress, parse_compress
from ferryman.migration.precopy_plan import POLICIES, PrecopyOptions
from ferryman.migration.report import MigrationReport
from ferryman.mode import Mode
from ferryman.paths import DEFAULT_STATE_DIR
from ferryman.report.summary import summary
from ferryman.safetext import printable

if TYPE_CHECKING:
    from ferryman.host.tcpprobe import TcpProbe
    from ferryman.targets.podman import PodmanTarget
    from ferryman.targets.runc import RuncTarget

DEFAULT_RUNC_ROOT = Path("/run/runc")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("migrate", help="live-migrate a process tree to another node",
                       description="Live-migrate the process tree rooted at PID to the agent "
                                   "at --to. If anything fails before the destination has "
                                   "restored it, the workload keeps running here.")
    p.add_argument("pid", type=int, nargs="?", help="root PID of the process tree")
    p.add_argument("--runc", metavar="ID", help="move this runc container instead of a PID "
                   "(its bundle and rootfs are synced with rsync)")
    p.add_argument("--podman", metavar="NAME", help="move this Podman container (name or id) "
                   "instead of a PID: Podman on the destination restores it as its own")
    p.add_argument("--runc-root", type=Path, default=DEFAULT_RUNC_ROOT, metavar="DIR",
                   help=f"runc's state root (runc --root; default {DEFAULT_RUNC_ROOT}, also "
                        f"Podman's for its containers)")
    p.add_argument("--to", required=True, metavar="IP:PORT", help="the destination agent")
    p.add_argument("--pki", required=True, type=Path, metavar="DIR", help="cluster PKI directory")
    p.add_argument("--name", required=True, help="this node's name (its certificate)")
    p.add_argument("--mode", default=Mode.COLD, type=Mode, choices=list(Mode),
                   help="migration mode: cold (freeze, copy, restore), postcopy (restore at "
                        "once, pages follow on demand), precopy (copy while running, then "
                        "the dirty rest frozen), hybrid (pre-copy, then a lazy final step); "
                        "auto: measures the workload's dirty rate and the link, then picks "
                        "cold if it fits --max-downtime, else pre-copy if it converges, else "
                        "hybrid or post-copy, among the modes the pre-flight allows (a "
                        "container: cold) (default: cold)")
    pc = p.add_argument_group("pre-copy convergence (precopy and hybrid)")
    pc.add_argument("--policy", default="budget", choices=POLICIES,
                    help="when to stop iterating: budget (predicted downtime fits "
                         "--max-downtime; switches to a lazy final step when pre-copy "
                         "stalls above it), lxd (--goal %% of pages unchanged, or "
                         "--max-iterations), phaul (p.haul's rules) (default: budget)")
    pc.add_argument("--max-iterations", type=int, metavar="N",
                    help="at most N pre-dumps (default: lxd 10, phaul 8, budget 30)")
    pc.add_argument("--goal", type=float, default=70.0, metavar="PCT",
                    help="lxd: stop once PCT%% of the pages were unchanged (default 70)")
    pc.add_argument("--max-downtime", type=float, default=300.0, metavar="MS",
                    help="budget: the downtime to aim for, in ms (default 300)")
    pc.add_argument("--link-mbps", type=float, metavar="MBIT",
                    help="auto: the link speed to assume when choosing a mode (default: "
                         "measured, with two 4 MiB round trips over the control connection)")
    pc.add_argument("--no-postcopy", action="store_true",
                    help="never fetch pages lazily (a broken link then cannot lose the "
                         "workload): no post-copy, no lazy final step")
    p.add_argument("--max-bandwidth", type=float, metavar="MBIT",
                   help="cap the memory pages on the wire at MBIT Mbit/s, in every mode "
                        "(post-copy's background push too; the kernel paces CRIU's page "
                        "socket); the pre-copy budget and --mode auto predict with it "
                        "(default: no cap)")
    p.add_argument("--compress", type=parse_compress, default=Compress.AUTO,
                   metavar="auto|on|off",
                   help="cold, post-copy: send the pages LZ4-compressed through "
                        "ferryman's own TLS "
                        "stream; auto (default) does when the link is slower than "
                        "compressing a sample of the workload's memory and it compresses")
    p.add_argument("--cold-restore", choices=("streamed", "images"), default="streamed",
                   help="cold: streamed (default where both nodes have lazy pages and the "
                        "pre-flight allows post-copy) fetches the pages straight into the "
                        "restored tree, held stopped until the last one is there; images "
                        "writes them to page files on the destination first")
    p.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help=f"where the source keeps logs (default {DEFAULT_STATE_DIR})")
    p.add_argument("--criu", default="criu", help="criu binary (default: from PATH)")
    p.add_argument("--tcp-established", action="store_true",
                   help="move live TCP connections too (CRIU's TCP repair; nftables lock)")
    p.add_argument("--move-address", metavar="IP/PREFIX@DEV",
                   help="take this service address down here and up on the destination "
                        "while frozen, and announce it there (gratuitous ARP)")
    p.add_argument("--probe", metavar="tcp:IP:PORT",
                   help="measure the downtime a client sees: keep a connection to the service "
                        "there (it must answer each line with a line: an echo server, redis) "
                        "and report the longest wait for an answer; needs --tcp-established")
    add_sync_option(p)
    p.add_argument("--force", action="store_true",
                   help="go ahead despite pre-flight warnings (never despite failures)")
    p.add_argument("--test-skip-preflight", action="store_true",
                   help=argparse.SUPPRESS)  # test-only: reach failures past the check
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferryman.agent.checkrun import MigrateOptions
    from ferryman.agent.gate import PreflightPolicy
    from ferryman.agent.source import SourceMigration
    from ferryman.cli.progress import Progress
    from ferryman.pki import load_node

    target = _runc_target(args)
    boxed = _podman_target(args)
    if target is None and boxed is None and (args.pid is None or args.pid <= 0):
        raise UsageError(f"bad PID {args.pid}", hint="give the root PID of the workload, "
                         "or --runc ID / --podman NAME for a container")
    host, port = parse_endpoint(args.to)
    creds = load_node(args.pki.resolve(), args.name)
    moving = parse_move_address(args.move_address) if args.move_address else None
    if args.no_postcopy and args.mode.lazy:
        raise UsageError(f"--mode {args.mode} fetches pages lazily, --no-postcopy forbids it",
                         hint="drop one of them")
    probe = _probe(args, moving)
    if args.max_bandwidth is not None:
        check_max_bandwidth(args.max_bandwidth)
        require_pacing(args.criu)
    precopy = PrecopyOptions(policy=args.policy, max_iterations=args.max_iterations,
                             goal_percent=args.goal, max_downtime_ms=args.max_downtime,
                             no_postcopy=args.no_postcopy, link_mbps=args.link_mbps)
    if probe is not None:
        probe.start()  # ProbeError before anything moves
    with Progress(enabled=not args.json) as progress:
        opts = MigrateOptions(pid=args.pid or 0, container=target, podman=boxed,
                              host=host, port=port,
                              creds=creds, state_dir=args.state_dir.resolve(), mode=args.mode,
                              criu_bin=args.criu, progress=progress.update,
                              tcp_established=args.tcp_established, move_address=moving,
                              precopy=precopy,
                              max_bandwidth_mbit=args.max_bandwidth,
                              compress=args.compress,
                              stream_cold=args.cold_restore == "streamed",
                              preflight=PreflightPolicy(
                                  force=args.force, skip=args.test_skip_preflight,
                                  synced=synced_paths(args),
                                  moved=(moving.ip,) if moving else ()))
        migration = SourceMigration(opts)
        error: FerrymanError | None = None
        try:
            asyncio.run(migration.run())
        except FerrymanError as exc:
            error = exc
            migration.report.error = exc.one_line()
        finally:
            if probe is not None:
                progress.update("PROBE", "waiting for the service to answer again")
                migration.report.probe = probe.stop(migration.t0)
    report = migration.report
    report.launched = bool(launch.launched)
    _write_report(report, args.report, migration.workdir / "report.json")
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(printable(summary(report), keep_newlines=True))
    if error is not None:
        raise error
    return 0


def _runc_target(args: argparse.Namespace) -> RuncTarget | None:
    from ferryman.targets.runc import RuncTarget

    if args.runc is None:
        return None
    if args.pid is not None:
        raise UsageError("give either a PID or --runc ID, not both",
                         hint="a container's processes move with it")
    return RuncTarget(args.runc, args.runc_root.resolve())


def _podman_target(args: argparse.Namespace) -> PodmanTarget | None:
    from ferryman.targets.podman import PodmanTarget

    if args.podman is None:
        return None
    if args.pid is not None or args.runc is not None:
        raise UsageError("give one of a PID, --runc ID or --podman NAME",
                         hint="a container's processes move with it")
    return PodmanTarget(args.podman, args.runc_root.resolve())


def _probe(args: argparse.Namespace, moving: MoveAddress | None) -> TcpProbe | None:
    from ferryman.host.tcpprobe import TcpProbe, parse_probe, source_for

    if args.probe is None:
        return None
    target = parse_probe(args.probe)
    if not args.tcp_established:
        raise UsageError("--probe keeps a connection to the service open, and CRIU moves a "
                         "connected service only with --tcp-established",
                         hint="add --tcp-established")
    return TcpProbe(target, source=source_for(target, moving))


def _write_report(report: MigrationReport, path: Path | None, default: Path) -> None:
    text = json.dumps(report.to_json(), indent=2) + "\n"
    if default.parent.exists():
        default.write_text(text)
    if path is not None:
        path.write_text(text)

