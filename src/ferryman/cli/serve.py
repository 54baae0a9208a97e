"""``ferryman serve``: run the node agent."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ferryman.agent.limits import Limits
from ferryman.cli.common import parse_endpoint
from ferryman.errors import UsageError

DEFAULT_STATE_DIR = Path("/var/lib/ferryman")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the ferryman agent on this node",
                       description="Run the node agent: receives migrations over mutual TLS.")
    p.add_argument("--listen", required=True, metavar="IP:PORT", help="address to listen on")
    p.add_argument("--pki", required=True, type=Path, metavar="DIR", help="cluster PKI directory")
    p.add_argument("--name", required=True, help="this node's name (its certificate)")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help=f"where migrations keep images and logs (default {DEFAULT_STATE_DIR})")
    p.add_argument("--criu", default="criu", help="criu binary (default: from PATH)")
    p.add_argument("--runc", default="runc", help="runc binary (default: from PATH)")
    p.add_argument("--runc-root", type=Path, default=Path("/run/runc"), metavar="DIR",
                   help="runc's state root for containers restored here (default /run/runc)")
    p.add_argument("--bundle-root", type=Path, metavar="DIR",
                   help="where containers moved here keep their bundles, one directory per "
                        "container id (default STATE_DIR/bundles)")
    p.add_argument("--movable-addresses", default="", metavar="CIDR@DEV[,CIDR@DEV]",
                   help="service addresses peers may move onto this node (migrate "
                        "--move-address): inside CIDR, no wider, on device DEV "
                        "(default: none)")
    p.add_argument("--max-migrations", type=int, default=Limits().migrations, metavar="N",
                   help="migrations received at once; more are refused as busy "
                        f"(default {Limits().migrations})")
    p.add_argument("--test-hide-feature", action="append", default=[], metavar="FEATURE",
                   help=argparse.SUPPRESS)  # test-only: pretend CRIU lacks FEATURE
    p.add_argument("--test-pause-after-restore", type=float, default=0.0,
                   help=argparse.SUPPRESS)  # test-only: time to break the source at RESTORED
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ferryman.agent.config import AgentConfig
    from ferryman.agent.server import Agent
    from ferryman.pki import load_node

    if args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)  # an agent logs what it does
    from ferryman.host.addresses import parse_movable

    if args.max_migrations < 1:
        raise UsageError(f"bad --max-migrations {args.max_migrations}",
                         hint="an agent receives at least one migration at a time")
    host, port = parse_endpoint(args.listen)
    movable = parse_movable(args.movable_addresses) if args.movable_addresses else ()
    creds = load_node(args.pki.resolve(), args.name)
    config = AgentConfig(name=args.name, listen_host=host, listen_port=port, creds=creds,
                         state_dir=args.state_dir.resolve(), criu_bin=args.criu,
                         runc_bin=args.runc, runc_root=args.runc_root.resolve(),
                         bundle_root=args.bundle_root.resolve() if args.bundle_root else None,
                         movable=movable, limits=Limits(migrations=args.max_migrations),
                         hidden_features=frozenset(args.test_hide_feature),
                         test_pause_after_restore=args.test_pause_after_restore)
    asyncio.run(Agent(config).serve())
    return 0
