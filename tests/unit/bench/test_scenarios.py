"""Which cells a benchmark runs: modes, the issue's scenario names, their flags."""

from __future__ import annotations

import pytest
from bench.run import cells, parse_args
from bench.scenarios import MODES, cells_for


def test_cells_of_each_mode() -> None:
    assert [(c.label, c.migration, c.size_mib) for c in cells_for(MODES["postcopy"])] == [
        ("256 MiB", "postcopy", 256), ("1024 MiB", "postcopy", 1024),
        ("4096 MiB", "postcopy", 4096)]
    assert [(c.label, c.migration) for c in cells_for(MODES["echo"])] == [
        ("cold", "cold"), ("postcopy", "postcopy")]
    tree = cells_for(MODES["tree"])
    assert [(c.label, c.procs, c.size_mib, c.migration) for c in tree] == [
        ("1 process", 1, 64, "cold"), ("10 processes", 10, 64, "cold"),
        ("100 processes", 100, 64, "cold")]


def test_default_runs_everything_and_scenarios_select_modes() -> None:
    args = parse_args([])
    assert args.modes == ["cold", "postcopy", "echo", "tree"]
    assert args.runs == 3
    assert len(cells(args)) == 2 + 3 + 2 + 3
    assert parse_args(["--scenarios", "S3,s4"]).modes == ["echo", "tree"]
    assert parse_args(["--modes", "tree", "--scenarios", "S3"]).modes == ["echo", "tree"]
    picked = cells(parse_args(["--modes", "echo,tree", "--echo-modes", "postcopy",
                               "--procs", "2,5", "--tree-mib", "16", "--sizes", "512"]))
    assert [(c.mode, c.label, c.size_mib) for c in picked] == [
        ("echo", "postcopy", None), ("tree", "2 processes", 16), ("tree", "5 processes", 16)]


@pytest.mark.parametrize("argv", [["--scenarios", "S9"], ["--modes", "nope"],
                                  ["--echo-modes", "precopy"], ["--procs", "0"],
                                  ["--procs", "x"], ["--tools", "nobody"]])
def test_bad_choices_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
