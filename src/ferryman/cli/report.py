"""``ferryman report``: read a migration report back, as text, JSON or a picture."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="summarise a migration report, optionally as a picture",
                       description="Print a readable summary of a migration report (the JSON "
                                   "file 'ferryman migrate --report FILE' writes): phases, "
                                   "downtime, bytes moved, CRIU's statistics. With --plot, "
                                   "also draw its timeline as a PNG (needs matplotlib).")
    p.add_argument("file", type=Path, metavar="FILE.json", help="the migration report")
    p.add_argument("--plot", type=Path, metavar="OUT.png",
                   help="draw the phase timeline (and pre-copy iterations) into this PNG")
    p.add_argument("--json", action="store_true",
                   help="print the checked report as JSON instead of the summary")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ferryman.report.load import load_report
    from ferryman.report.summary import summary
    from ferryman.safetext import printable

    view = load_report(args.file)
    if args.plot is not None:
        from ferryman.report.plot import plot_report

        plot_report(view, args.plot)
    if args.json:
        data = view.report.to_json()
        if view.iterations:
            data["iterations"] = [asdict(i) for i in view.iterations]
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(printable(summary(view, full=True), keep_newlines=True))
    if args.plot is not None:
        print(f"timeline written to {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0
