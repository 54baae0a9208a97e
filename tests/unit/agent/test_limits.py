"""An agent's shared caps, as bookkeeping (issue 16 findings 3 and 4)."""

from __future__ import annotations

from ferryman.agent.limits import BufferBudget, Oldest, Slots


def test_slots_hold_at_most_their_limit_and_come_back() -> None:
    s = Slots(2)
    assert s.take()
    assert s.take()
    assert not s.take()
    s.give_back()
    assert s.take()


def test_oldest_names_the_member_to_drop_past_the_limit() -> None:
    o: Oldest[str] = Oldest(2)
    assert o.add("a") is None
    assert o.add("b") is None
    assert o.add("c") == "a"
    o.discard("b")
    assert o.add("d") is None
    assert o.add("e") == "c"
    assert len(o) == 2


def test_buffer_budget_is_one_total_for_all_holders() -> None:
    b = BufferBudget(100)
    assert b.claim("x", 60)
    assert not b.claim("y", 50)  # 110: refused, nothing changes
    assert b.total == 60
    assert b.claim("x", 10)  # x holds less now
    assert b.claim("y", 90)
    assert not b.claim("x", 11)
    b.release("y")
    assert b.total == 10
    assert b.claim("x", 100)
