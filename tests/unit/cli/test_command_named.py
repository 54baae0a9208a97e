"""Which subcommand's module the command line needs (cli/main.py: command_named)."""

from __future__ import annotations

import argparse

import pytest

from ferryman.cli.main import build_parser, command_named


@pytest.mark.parametrize(("argv", "module"), [
    (["migrate", "123", "--to", "x:1"], "ferryman.cli.migrate"),
    (["-v", "serve", "--config", "f"], "ferryman.cli.serve"),
    (["-vv", "pid", "next", "7"], "ferryman.cli.pid"),
    (["--verbose", "report", "r.json"], "ferryman.cli.report"),
    (["--help"], None),
    ([], None),
    (["bogus", "migrate"], None),  # the first word decides: an unknown one, every command
])
def test_the_first_word_that_is_no_option_names_the_command(argv: list[str],
                                                            module: str | None) -> None:
    assert command_named(argv) == module


def subcommands(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_one_command_parses_as_in_the_whole_parser() -> None:
    whole = build_parser().parse_args(["pid", "next", "699"])
    alone = build_parser("ferryman.cli.pid").parse_args(["pid", "next", "699"])
    assert vars(whole) == vars(alone)
    assert subcommands(build_parser("ferryman.cli.pid")) == ["pid"]
    assert subcommands(build_parser())[:3] == ["migrate", "check", "serve"]
