"""The one-line errors whose words depend on what the source knew (errors.py)."""

from __future__ import annotations

from ferryman.errors import WorkloadLost


def test_a_loss_says_the_memory_was_split() -> None:
    exc = WorkloadLost(42, "link cut")
    assert exc.exit_code == 9
    assert "LOST during the post-copy page transfer: link cut" in exc.message
    assert exc.hint is not None
    assert "split between the nodes" in exc.hint
    assert "ferryman orphans" not in exc.hint


def test_a_loss_after_every_page_went_sends_the_operator_to_the_destination_first() -> None:
    exc = WorkloadLost(42, "B closed the connection", served_all=True)
    assert exc.exit_code == 9  # the source cannot confirm that it runs there
    assert exc.hint is not None
    assert "may run whole" in exc.hint
    assert "ferryman orphans" in exc.hint
    assert "split between the nodes" not in exc.hint
