"""``ferryman pid``: control the PIDs of processes created next (pre-flight for restores)."""

from __future__ import annotations

import argparse

_NEXT_DESCRIPTION = """\
Make the next process created in this PID namespace get PID N+1, by writing N to
/proc/sys/kernel/ns_last_pid (needs root: CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).

This is racy: the setting only says where the kernel's PID search starts, so any
process or thread created in this namespace before yours takes PID N+1, and yours
gets the next free one. If N+1 is in use, the next process gets the first free PID
after it. This is how CRIU restored PIDs before Linux 5.5 added clone3 with set_tid,
which asks for an exact PID and fails instead of racing (ferryman uses clone3 where
the kernel has it)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "pid", help="control the PID the next process gets",
        description="Control the PIDs of processes created next in this PID namespace.")
    actions = parser.add_subparsers(dest="pid_action", metavar="ACTION", required=True)
    next_parser = actions.add_parser(
        "next", help="make the next process in this PID namespace get PID N+1",
        description=_NEXT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    next_parser.add_argument("last", type=int, metavar="N",
                             help="the last PID handed out; the next one is N+1")
    next_parser.set_defaults(run=run_next)


def run_next(args: argparse.Namespace) -> int:
    from ferryman.host.pidctl import set_ns_last_pid

    set_ns_last_pid(args.last)
    print(f"the next process created in this PID namespace gets PID {args.last + 1}")
    return 0
