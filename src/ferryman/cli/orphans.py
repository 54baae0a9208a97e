"""``ferryman orphans``: list, resume or kill workloads an agent kept stopped."""

from __future__ import annotations

import argparse
from pathlib import Path

from ferryman.paths import DEFAULT_STATE_DIR


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "orphans", help="workloads restored here but never committed (kept stopped)",
        description="A destination agent that loses the source after restoring a workload "
                    "but before the commit keeps the workload STOPPED: it cannot know whether "
                    "the source resumed its own copy. Check the source, then resume the copy "
                    "here (only if the source's copy is gone) or kill it.")
    p.add_argument("action", nargs="?", choices=("list", "resume", "kill"), default="list")
    p.add_argument("migration_id", nargs="?", help="the migration (for resume and kill)")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help=f"the agent's --state-dir (default {DEFAULT_STATE_DIR})")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferryman.agent import orphans
    from ferryman.errors import UsageError

    if args.action == "list":
        found = orphans.list_orphans(args.state_dir)
        if not found:
            print("no orphaned workloads")
        for o in found:
            state = "STOPPED" if o.alive else "gone"
            print(f"{o.migration_id}  PID {o.tree.pid}  {state}")
        return 0
    if not args.migration_id:
        raise UsageError(f"'orphans {args.action}' needs a migration id",
                         hint="list them with 'ferryman orphans'")
    o = (orphans.resume if args.action == "resume" else orphans.kill)(
        args.state_dir, args.migration_id)
    done = "resumed" if args.action == "resume" else "killed"
    print(f"{o.migration_id}: PID {o.tree.pid} {done}")
    return 0
