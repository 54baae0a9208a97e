"""Which cells a benchmark runs: modes, the issue's scenario names, their flags."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from bench import scenarios
from bench.cell import Cell, RunResult, migrator
from bench.env import Env
from bench.proc import BenchError
from bench.run import cells, parse_args
from bench.scenarios import MODES, cells_for, run_cell


def test_cells_of_each_mode() -> None:
    grid = cells_for(MODES["postcopy"])  # S1: every size with every dirty rate
    assert [(c.size_mib, c.dirty_rate, c.migration) for c in grid] == [
        (s, r, "postcopy") for s in (256, 1024, 4096) for r in (0, 1000, 10000)]
    assert grid[1].label == "256 MiB, 1000 pages/s"
    assert [(c.size_mib, c.dirty_rate) for c in cells_for(MODES["cold"], sizes=[64],
                                                          rates=[0, 5])] == [(64, 0), (64, 5)]
    assert [c.migration for c in cells_for(MODES["precopy"], sizes=[64], rates=[0])] == [
        "precopy"]
    assert [(c.label, c.migration) for c in cells_for(MODES["echo"])] == [
        ("cold", "cold"), ("postcopy", "postcopy")]
    assert [(c.label, c.migration) for c in cells_for(MODES["runc-echo"])] == [
        ("cold", "cold"), ("postcopy", "postcopy")]
    assert [(c.label, c.migration) for c in cells_for(MODES["redis"])] == [
        ("cold", "cold"), ("postcopy", "postcopy")]
    assert [(c.label, c.migration, c.link_mbit) for c in cells_for(MODES["shaped-redis"])] == [
        ("cold, 1 Gbit/s", "cold", 1000), ("cold, 10 Gbit/s", "cold", 10000)]
    rnd = cells_for(MODES["shaped-random"])
    assert [(c.label, c.fill, c.link_mbit) for c in rnd] == [
        ("256 MiB, 0 pages/s, 1 Gbit/s", "random", 1000),
        ("256 MiB, 0 pages/s, 10 Gbit/s", "random", 10000)]
    (cap,) = cells_for(MODES["max-bandwidth"])
    assert (cap.link_mbit, cap.fill, cap.ferryman_args) == (None, "random",
                                                            ("--max-bandwidth", "200"))
    tree = cells_for(MODES["tree"])
    assert [(c.label, c.procs, c.size_mib, c.migration) for c in tree] == [
        ("1 process", 1, 64, "cold"), ("10 processes", 10, 64, "cold"),
        ("100 processes", 100, 64, "cold")]


def test_default_runs_everything_and_scenarios_select_modes() -> None:
    args = parse_args([])
    # no precopy here
    assert args.modes == ["cold", "postcopy", "postcopy-random", "redis", "echo", "runc-echo",
                          "podman-echo", "podman-redis", "shaped-redis", "shaped-random",
                          "max-bandwidth", "tree"]
    assert args.runs == 3
    assert len(cells(args)) == 9 + 9 + 1 + 2 + 2 + 2 + 2 + 2 + 2 + 2 + 1 + 3
    assert parse_args(["--scenarios", "shaped"]).modes == ["shaped-redis", "shaped-random",
                                                           "max-bandwidth"]
    assert parse_args(["--scenarios", "S3,s4"]).modes == ["echo", "runc-echo", "podman-echo",
                                                           "tree"]
    assert parse_args(["--scenarios", "S1"]).modes == ["cold", "postcopy"]
    assert parse_args(["--scenarios", "S2"]).modes == ["redis", "podman-redis"]
    assert parse_args(["--modes", "precopy,cold"]).modes == ["cold", "precopy"]
    s1 = cells(parse_args(["--scenarios", "S1", "--sizes", "64", "--rates", "0,100"]))
    assert [(c.mode, c.size_mib, c.dirty_rate) for c in s1] == [
        ("cold", 64, 0), ("cold", 64, 100), ("postcopy", 64, 0), ("postcopy", 64, 100)]
    s2 = cells(parse_args(["--scenarios", "S2", "--redis-modes", "postcopy"]))
    assert [(c.mode, c.migration) for c in s2] == [("redis", "postcopy"),
                                                   ("podman-redis", "postcopy")]
    assert parse_args(["--modes", "tree", "--scenarios", "S3"]).modes == [
        "echo", "runc-echo", "podman-echo", "tree"]
    boxes = cells(parse_args(["--modes", "runc-echo", "--echo-modes", "postcopy"]))
    assert [(c.mode, c.migration) for c in boxes] == [("runc-echo", "postcopy")]
    picked = cells(parse_args(["--modes", "echo,tree", "--echo-modes", "postcopy",
                               "--procs", "2,5", "--tree-mib", "16", "--sizes", "512"]))
    assert [(c.mode, c.label, c.size_mib) for c in picked] == [
        ("echo", "postcopy", None), ("tree", "2 processes", 16), ("tree", "5 processes", 16)]


@pytest.mark.parametrize("argv", [["--scenarios", "S9"], ["--modes", "nope"],
                                  ["--echo-modes", "precopy"], ["--redis-modes", "hot"],
                                  ["--rates", "-1"], ["--rates", "x"], ["--redis-keys", "0"],
                                  ["--procs", "0"],
                                  ["--procs", "x"], ["--tools", "nobody"]])
def test_bad_choices_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_by_hand_has_no_precopy_baseline_and_says_so() -> None:
    cell = cells_for(MODES["precopy"], sizes=[64], rates=[0])[0]
    assert migrator(cell, "ferryman") is not None
    with pytest.raises(BenchError, match=r"no by-hand baseline for 'precopy'.*--tools ferryman"):
        migrator(cell, "by-hand")


def test_a_runc_container_runs_ferryman_and_by_hand_only_in_rotating_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """runc has no TLS flags: by-hand-tls is left out of the container's cells."""
    seen: list[tuple[int, str]] = []

    def fake(env: object, cell: Cell, tool: str, rep: int) -> RunResult:
        seen.append((rep, tool))
        return RunResult(cell.mode, None, tool, rep, cell.label, error="not run")

    monkeypatch.setitem(scenarios.MEASURE, "runc-echo", fake)
    cell = cells_for(MODES["runc-echo"], migrations=["cold"])[0]
    env = cast(Env, SimpleNamespace(keep_images=True))  # no image pruning: no I/O
    out = run_cell(env, cell, 3, ("ferryman", "by-hand", "by-hand-tls"))
    assert seen == [(1, "ferryman"), (1, "by-hand"), (2, "by-hand"), (2, "ferryman"),
                    (3, "ferryman"), (3, "by-hand")]
    assert [r.tool for r in out] == [t for _, t in seen]
    assert MODES["echo"].tools == ("ferryman", "by-hand", "by-hand-tls")
