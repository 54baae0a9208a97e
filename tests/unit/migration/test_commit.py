"""migration/commit.py: the point of no return's order, for a cold and for a lazy final dump."""

from __future__ import annotations

import pytest

from ferryman.migration.commit import (
    COLD_STEPS,
    LAZY_STEPS,
    STREAMED_STEPS,
    Step,
    commit_steps,
)

BOTH = pytest.mark.parametrize("steps", [COLD_STEPS, LAZY_STEPS, STREAMED_STEPS],
                               ids=["cold", "lazy", "streamed"])


def _send(steps: tuple[Step, ...]) -> int:
    sends = [i for i, s in enumerate(steps) if s in (Step.SEND_COMMIT, Step.SEND_COMMIT_ANYWAY)]
    assert len(sends) == 1
    return sends[0]


def test_the_table_for_each_dump() -> None:
    assert commit_steps(lazy=False) == COLD_STEPS
    assert commit_steps(lazy=True) == LAZY_STEPS
    assert commit_steps(lazy=True, streamed=True) == STREAMED_STEPS


@BOTH
def test_each_step_at_most_once(steps: tuple[Step, ...]) -> None:
    assert len(set(steps)) == len(steps)


@BOTH
def test_nothing_can_run_twice_once_commit_leaves(steps: tuple[Step, ...]) -> None:
    """SIGSTOP queued, the guard told and CRIU's lock gone before the destination may resume."""
    send = _send(steps)
    for before in (Step.QUEUE_STOP, Step.MARK_COMMIT, Step.RELEASE_LOCK):
        assert steps.index(before) < send, before


@BOTH
def test_held_segments_go_only_to_the_new_owner(steps: tuple[Step, ...]) -> None:
    assert steps.index(Step.FORWARD_INFLIGHT) > _send(steps)


@BOTH
def test_committed_is_awaited_or_watched_after_the_send(steps: tuple[Step, ...]) -> None:
    reads = [s for s in steps if s in (Step.AWAIT_COMMITTED, Step.WATCH_COMMITTED)]
    assert len(reads) == 1
    assert steps.index(reads[0]) > _send(steps)


def test_cold_checks_criu_still_holds_the_tree_before_committing() -> None:
    assert Step.CHECK_HELD not in LAZY_STEPS
    assert COLD_STEPS.index(Step.QUEUE_STOP) < COLD_STEPS.index(Step.CHECK_HELD) < \
        COLD_STEPS.index(Step.ENTER_COMMITTED)


def test_cold_commits_even_if_the_send_fails_lazy_does_not() -> None:
    """Cold: COMMITTED before the send, which may fail (the Commit may have arrived). Lazy: a
    failed send is still rolled back, so COMMITTED comes after it, then the page tail."""
    assert Step.SEND_COMMIT_ANYWAY in COLD_STEPS
    assert Step.SEND_COMMIT not in COLD_STEPS
    assert COLD_STEPS.index(Step.ENTER_COMMITTED) < _send(COLD_STEPS)
    assert Step.SEND_COMMIT in LAZY_STEPS
    assert Step.SEND_COMMIT_ANYWAY not in LAZY_STEPS
    assert _send(LAZY_STEPS) < LAZY_STEPS.index(Step.ENTER_COMMITTED)
    assert LAZY_STEPS[-2:] == (Step.AWAIT_COMMITTED, Step.ENTER_SERVING)
    assert Step.ENTER_SERVING not in COLD_STEPS


def test_a_streamed_restore_commits_anyway_as_cold_does() -> None:
    """The destination holds every page before Restored: a failed send may have arrived, so
    COMMITTED comes first and the source copy goes either way; no page tail to serve."""
    assert Step.SEND_COMMIT_ANYWAY in STREAMED_STEPS
    assert STREAMED_STEPS.index(Step.ENTER_COMMITTED) < _send(STREAMED_STEPS)
    assert Step.ENTER_SERVING not in STREAMED_STEPS
    assert STREAMED_STEPS[-1] is Step.AWAIT_COMMITTED
