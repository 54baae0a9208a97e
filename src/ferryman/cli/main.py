"""The ``ferryman`` command: subcommand registry, logging setup and error-to-exit-code mapping.

Each subcommand module exposes ``register(subparsers)``; the parser it adds sets
``run=<callable(args) -> int>`` as its default. Only the CLI layer prints.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ferryman import __version__
from ferryman.errors import FerrymanError
from ferryman.safetext import PrintableFormatter, printable

# Subcommand modules, in the order they appear in --help; each registers the command its
# module is named after.
_COMMANDS = (
    "ferryman.cli.migrate",
    "ferryman.cli.check",
    "ferryman.cli.serve",
    "ferryman.cli.pki",
    "ferryman.cli.plug",
    "ferryman.cli.pid",
    "ferryman.cli.orphans",
    "ferryman.cli.report",
)


def command_named(argv: Sequence[str]) -> str | None:
    """The module of the subcommand ``argv`` names (its first word that is not an option:
    the top-level options take no value), or None (no command, an unknown one, --help)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return next((m for m in _COMMANDS if m.rsplit(".", 1)[1] == word), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``only`` (a module of ``_COMMANDS``) just that
    subcommand: a migration starts without importing every other command's code."""
    parser = argparse.ArgumentParser(
        prog="ferryman",
        description="Live-migrate Linux process trees and containers between machines with CRIU.",
    )
    parser.add_argument("--version", action="version", version=f"ferryman {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS if only is None else (only,):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a subcommand still under construction
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_named(words))
    args = parser.parse_args(words)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    handler = logging.StreamHandler()  # peer text in a log line stays in that one line
    handler.setFormatter(PrintableFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    try:
        code: int = args.run(args)
    except FerrymanError as exc:
        print(f"ferryman: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ferryman: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback kept in a file
        print(f"ferryman: error: {internal_error(exc)}", file=sys.stderr)
        return INTERNAL_ERROR
    return code


INTERNAL_ERROR = 70  # sysexits.h EX_SOFTWARE


def internal_error(exc: Exception) -> str:
    """The one line for an exception no code expected (a bug), its traceback written to a
    file the line names. The migration's own clean-up ran on its way out: the workload is
    where the command's progress last said."""
    import tempfile
    import traceback

    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__}.{kind}"
    text = printable(f"{kind}: {exc}").replace("\n", " ")
    try:
        fd, path = tempfile.mkstemp(prefix="ferryman-crash-", suffix=".txt")
        with open(fd, "w") as fh:
            fh.write("".join(traceback.format_exception(exc)))
    except OSError as err:
        return f"internal error: {text} (the traceback could not be kept: {err})"
    return (f"internal error: {text}: a bug in ferryman; its traceback is in {path}, "
            f"please report it with that file")


if __name__ == "__main__":  # the command itself is cli/launch.py:entry
    sys.exit(main())
