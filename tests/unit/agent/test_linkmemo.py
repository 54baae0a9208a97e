"""The link memo's rules: what is fresh enough to use instead of a link test, what is kept."""

from __future__ import annotations

import pytest

from ferryman.agent.linkmemo import MAX_AGE_S, MAX_ENTRIES, fresh, memo_key, updated

NOW = 1_800_000_000.0


def entry(rate: object = 5e8, at: object = NOW - 10, by: object = "check") -> dict[str, object]:
    return {"bytes_per_s": rate, "at": at, "by": by}


def test_a_recent_rate_is_used_with_its_age_and_who_timed_it() -> None:
    got = fresh(entry(), NOW)
    assert got is not None
    assert (got.bytes_per_s, got.age_s, got.by) == (5e8, 10, "check")
    assert got.describe() == "remembered: timed by check 10 s ago"


def test_a_link_too_fast_to_time_is_remembered_as_such() -> None:
    got = fresh(entry(rate=None), NOW)
    assert got is not None
    assert got.bytes_per_s is None


@pytest.mark.parametrize("at", [NOW - MAX_AGE_S - 1, NOW + 5])
def test_an_old_rate_or_one_from_the_future_is_timed_again(at: float) -> None:
    assert fresh(entry(at=at), NOW) is None
    assert fresh(entry(at=NOW - MAX_AGE_S), NOW) is not None


@pytest.mark.parametrize("bad", [
    None, [], "fast", entry(rate=0), entry(rate=-1.0), entry(rate="1e9"), entry(rate=True),
    entry(at="yesterday"), entry(at=None), entry(at=False), entry(by=7), {"at": NOW},
])
def test_a_damaged_entry_is_no_memo(bad: object) -> None:
    assert fresh(bad, NOW) is None


def test_the_key_names_the_node_and_the_endpoint() -> None:
    assert memo_key("b", "10.0.0.2", 7070) == "b@10.0.0.2:7070"
    assert memo_key("b", "10.0.0.2", 7070) != memo_key("c", "10.0.0.2", 7070)


def test_an_update_sets_the_key_and_drops_what_cannot_be_used() -> None:
    memo = {"b@x:1": entry(at=NOW - 2 * MAX_AGE_S), "c@y:1": entry(), "d@z:1": "junk",
            "e@w:1": entry(rate=1e6)}
    new = updated(memo, "e@w:1", 2e9, by="migrate", now=NOW)
    assert new == {"c@y:1": entry(), "e@w:1": {"bytes_per_s": 2e9, "at": NOW, "by": "migrate"}}


@pytest.mark.parametrize("damaged", [None, [1, 2], "text", 3])
def test_an_update_of_a_damaged_memo_starts_a_new_one(damaged: object) -> None:
    assert updated(damaged, "b@x:1", None, by="check", now=NOW) == {
        "b@x:1": {"bytes_per_s": None, "at": NOW, "by": "check"}}


def test_the_memo_keeps_the_newest_destinations() -> None:
    memo = {f"n{i}@h:1": entry(at=NOW - 100 + i * 0.1) for i in range(MAX_ENTRIES + 10)}
    new = updated(memo, "new@h:1", 1e9, by="check", now=NOW)
    assert len(new) == MAX_ENTRIES
    assert "new@h:1" in new
    assert "n0@h:1" not in new
    assert f"n{MAX_ENTRIES + 9}@h:1" in new
