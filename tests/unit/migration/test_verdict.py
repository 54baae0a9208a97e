"""The verdict: rows merged into allowed modes, the migrate gate, and rows on the wire."""

from __future__ import annotations

import json
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.errors import RemoteProtocolError
from ferryman.migration.verdict import (
    ALL_MODES,
    LAZY_MODES,
    MODES,
    Row,
    Status,
    Verdict,
    merge,
    rows_from_json,
    rows_to_json,
)
from ferryman.wire import MODES as WIRE_MODES

P, W, F = Status.PASS, Status.WARN, Status.FAIL
SUPPORTED = ("cold", "postcopy")


def row(check: str, status: Status = P, modes: frozenset[str] = ALL_MODES,
        side: str = "destination") -> Row:
    return Row(check, side, status, f"{check} detail", "" if status is P else "do x", modes)


def test_modes_match_the_wire() -> None:
    assert MODES == WIRE_MODES


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"check": "Bad"}, ValueError),
    ({"check": ""}, ValueError),
    ({"side": "left"}, ValueError),
    ({"status": "pass"}, TypeError),
    ({"detail": "two\nlines"}, ValueError),
    ({"detail": "x" * 401}, ValueError),
    ({"fix": 3}, ValueError),
    ({"status": F, "fix": ""}, ValueError),
    ({"status": W, "fix": ""}, ValueError),
    ({"modes": frozenset({"turbo"})}, ValueError),
    ({"modes": {"cold"}}, ValueError),
])
def test_rows_are_validated(kwargs: dict[str, object], error: type[Exception]) -> None:
    base: dict[str, object] = {"check": "files", "side": "source", "status": P,
                               "detail": "d", "fix": "", "modes": ALL_MODES}
    with pytest.raises(error):
        Row(**{**base, **kwargs})  # type: ignore[arg-type]


def test_all_pass_allows_every_supported_mode() -> None:
    v = merge([row("dump", side="source")], [row("files"), row("disk")], SUPPORTED)
    assert v.allowed_modes == ("cold", "postcopy")
    assert v.clean_modes == ("cold", "postcopy")
    assert v.can_move
    assert v.blocking("cold", force=False) == []


def test_a_fail_for_every_mode_rules_everything_out() -> None:
    v = merge([], [row("pids", F)], SUPPORTED)
    assert v.allowed_modes == ()
    assert not v.can_move
    assert [r.check for r in v.blocking("cold", force=True)] == ["pids"]


def test_a_fail_for_lazy_modes_leaves_cold() -> None:
    v = merge([], [row("kernel.userfaultfd", F, LAZY_MODES)], SUPPORTED)
    assert v.allowed_modes == ("cold",)
    assert v.can_move
    assert not merge([], v.rows, SUPPORTED, "postcopy").can_move
    assert merge([], v.rows, SUPPORTED, "cold").can_move
    assert v.blocking("cold", force=False) == []
    assert [r.check for r in v.blocking("postcopy", force=True)] == ["kernel.userfaultfd"]


def test_warnings_allow_but_block_without_force() -> None:
    v = merge([], [row("files.mtime", W)], SUPPORTED, "cold")
    assert v.allowed_modes == ("cold", "postcopy")
    assert v.clean_modes == ()
    assert v.can_move
    assert [r.check for r in v.blocking("cold", force=False)] == ["files.mtime"]
    assert v.blocking("cold", force=True) == []


def test_notes_never_block() -> None:
    v = merge([row("postcopy.risk", W, frozenset(), side="both")], [], SUPPORTED)
    assert v.clean_modes == ("cold", "postcopy")
    assert v.blocking("postcopy", force=False) == []
    assert [r.check for r in v.warnings()] == ["postcopy.risk"]


def test_unsupported_modes_are_never_allowed() -> None:
    v = merge([], [], ("cold",))
    assert v.allowed_modes == ("cold",)
    assert not merge([], [], ("cold",), "precopy").can_move
    assert merge([], [], ()).allowed_modes == ()
    assert merge([], [], ["postcopy", "cold", "bogus"]).supported == ("cold", "postcopy")


def test_unknown_requested_mode_is_a_bug() -> None:
    with pytest.raises(ValueError, match="auto"):
        merge([], [], SUPPORTED, "auto")


def test_auto_candidates() -> None:
    v = merge([], [row("memory", W, frozenset({"cold"}))], SUPPORTED)
    assert v.auto_candidates() == ("postcopy", "cold")  # warning-free first
    assert v.auto_candidates(no_postcopy=True) == ("cold",)
    assert merge([], [row("x", F)], SUPPORTED).auto_candidates() == ()


def test_rows_are_shown_in_a_fixed_order() -> None:
    v = merge([row("dump", side="source"), row("workload", side="source")],
              [row("disk"), row("cpu"), row("zzz"), row("kernel.time-ns"), row("criu")],
              SUPPORTED)
    assert [r.check for r in v.rows] == ["workload", "criu", "kernel.time-ns", "cpu", "disk",
                                         "dump", "zzz"]


@pytest.mark.parametrize(("fail_modes", "warn_modes"),
                         list(product([frozenset(), LAZY_MODES, ALL_MODES, frozenset({"cold"})],
                                      repeat=2)))
def test_allowed_and_clean_are_consistent(fail_modes: frozenset[str],
                                          warn_modes: frozenset[str]) -> None:
    rows = [row("a", F, fail_modes) if fail_modes else row("a"),
            row("b", W, warn_modes) if warn_modes else row("b")]
    v = merge([], rows, SUPPORTED)
    assert set(v.allowed_modes) == set(SUPPORTED) - fail_modes
    assert set(v.clean_modes) == set(SUPPORTED) - fail_modes - warn_modes
    for mode in SUPPORTED:
        blocked = bool(v.blocking(mode, force=False))
        assert blocked == (mode in fail_modes or mode in warn_modes)
        assert bool(v.blocking(mode, force=True)) == (mode in fail_modes)


def test_to_json() -> None:
    v = merge([], [row("pids", F), row("files.mtime", W, LAZY_MODES)], SUPPORTED, "cold")
    out = v.to_json()
    assert out["can_move"] is False
    assert out["allowed_modes"] == []
    assert out["requested_mode"] == "cold"
    assert out["rows"][0] == {"check": "pids", "side": "destination",  # type: ignore[index]
                              "status": "fail", "detail": "pids detail", "fix": "do x",
                              "modes": ["cold", "postcopy", "precopy", "hybrid"]}
    json.dumps(out)


# -- the wire ------------------------------------------------------------------------------

rows_strategy = st.builds(
    Row,
    st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True),
    st.sampled_from(["source", "destination", "both"]),
    st.just(P),
    st.text(max_size=50).filter(lambda s: "\n" not in s),
    st.just(""),
    st.frozensets(st.sampled_from(MODES)),
)


@given(st.lists(rows_strategy, max_size=10), st.lists(st.sampled_from(MODES), unique=True))
def test_rows_round_trip(rows: list[Row], modes: list[str]) -> None:
    assert rows_from_json(rows_to_json("node-b", modes, rows)) == ("node-b", tuple(modes),
                                                                   tuple(rows))


def _report(**changes: object) -> str:
    obj: dict[str, object] = {"v": 1, "node": "b", "modes": ["cold"],
                              "rows": [row("files", F).to_json()]}
    obj.update(changes)
    return json.dumps(obj)


def _row(**changes: object) -> dict[str, object]:
    return {**row("files", F).to_json(), **changes}


@pytest.mark.parametrize("text", [
    "", "[]", "nope", '{"v": 1}', "NaN",
    _report(v=2), _report(node=""), _report(node=7), _report(modes=["turbo"]),
    _report(modes="cold"), _report(rows={}), _report(rows=[_row()] * 65),
    _report(rows=[[1, 2]]), _report(rows=[_row(status="maybe")]),
    _report(rows=[_row(status=["fail"])]), _report(rows=[_row(modes="cold")]),
    _report(rows=[_row(modes=[1])]), _report(rows=[_row(modes=["turbo"])]),
    _report(rows=[_row(check="BAD")]), _report(rows=[_row(side="up")]),
    _report(rows=[_row(detail=None)]), _report(rows=[_row(fix="")]),
    _report(rows=[_row(extra=1)]), _report(extra=1),
    '{"v": 1, "node": "b", "modes": [], "rows": [], "v": 1}' + "x",
])
def test_malformed_reports_are_remote_errors(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        rows_from_json(text)


def test_verdict_is_hashable_data() -> None:
    v = merge([], [row("files")], SUPPORTED)
    assert isinstance(v, Verdict)
    assert hash(v.rows)
