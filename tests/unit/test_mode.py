"""The one Mode enum: what each mode implies, derived from the member, never from names."""

from __future__ import annotations

import json

import pytest

from ferryman.mode import LAZY_MODES, MODES, PRE_COPY_MODES, Mode
from ferryman.wire import FrameDecoder, Plan, encode

ROWS = [  # mode, lazy final dump, pre-dumps, Plan.lazy, decided
    (Mode.COLD, False, False, False, True),
    (Mode.POSTCOPY, True, False, True, True),
    (Mode.PRECOPY, False, True, False, True),
    (Mode.HYBRID, True, True, False, True),
    (Mode.AUTO, False, False, False, False),
]


@pytest.mark.parametrize(("mode", "lazy", "pre_copies", "from_start", "decided"), ROWS)
def test_what_each_mode_implies(mode: Mode, lazy: bool, pre_copies: bool, from_start: bool,
                                decided: bool) -> None:
    assert (mode.lazy, mode.pre_copies, mode.lazy_from_start, mode.decided) == \
        (lazy, pre_copies, from_start, decided)
    assert (mode in LAZY_MODES, mode in PRE_COPY_MODES, mode in MODES) == \
        (lazy, pre_copies, decided)


def test_every_member_is_in_the_table() -> None:
    assert [r[0] for r in ROWS] == list(Mode)


def test_values_are_the_wire_and_report_strings() -> None:
    assert [str(m) for m in MODES] == ["cold", "postcopy", "precopy", "hybrid"]
    assert json.dumps({"mode": Mode.HYBRID}) == '{"mode": "hybrid"}'
    assert Mode("postcopy") is Mode.POSTCOPY
    assert Mode.COLD == "cold"


def test_plan_carries_the_value_and_decodes_to_the_member() -> None:
    frame = encode(Plan("m-1", Mode.HYBRID, 42, lazy=False))
    assert b'"mode":"hybrid"' in frame  # agents of before the enum read the same string
    decoder = FrameDecoder()
    decoder.receive_data(frame)
    got = decoder.maybe_message()
    assert isinstance(got, Plan)
    assert got.mode is Mode.HYBRID
    assert Plan("m-2", "postcopy", 42, lazy=True).mode is Mode.POSTCOPY  # type: ignore[arg-type]
