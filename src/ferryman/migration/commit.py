"""The point of no return, as one table: the SOURCE's steps from Restored to the commit.

Pure. Both final dumps end here once the destination reported ``Restored``: the cold dump
(CRIU holds the frozen tree at ``post-dump`` and destroys it when told so) and the lazy one
(post-copy, hybrid: CRIU keeps serving the memory). :func:`commit_steps` says which steps run
and in which order; the SOURCE driver (migration/source_driver.py) walks them the same way for
every mode and agent/commit.py and agent/source_drive.py carry them out. The order differs
in two places, on purpose, and the table says so instead of two copies of the code:

* **cold** checks that CRIU still holds the tree (``CHECK_HELD``): a CRIU that died let it run
  on after its dump, and committing would run it twice. A lazy dump's tree is held by the
  page server until the tail ends; there is nothing to check.
* **cold** enters COMMITTED *before* sending Commit and survives a failed send (the Commit
  may have arrived: destroying the source copy is still the only safe choice; the destination
  keeps an orphan otherwise), then watches for Committed in the background while CRIU cleans
  up. **lazy** sends Commit first (a failed send is still rolled back: CRIU is killed and the
  tasks, whose memory never left, continue) and waits for Committed before serving pages.

A **streamed** cold restore (migration/plan.py, rule 5) dumps lazily, but the destination
says Restored only once every page is in its stopped tree: from there on it is a cold commit
(the destination could run the workload), so its Commit, like cold's, is sent *anyway* after
COMMITTED; CRIU's lazy dump has (nearly always) ended by then, leaving the tree stopped, so
there is no CRIU to check, and the driver kills the source copy itself.

Invariants (tests/unit/migration/test_commit.py): every source task has a SIGSTOP queued and
the guard knows the commit (``MARK_COMMIT``) before Commit leaves; CRIU's network lock is gone
before the destination may resume (``RELEASE_LOCK`` before ``SEND_COMMIT``); held segments are
forwarded only after Commit (the destination owns the address then). The executor is replayed
call by call without I/O, cold and lazy, happy and failing, in tests/unit/agent/test_commit.py,
and the driver's walk in tests/unit/migration/test_source_driver.py.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["COLD_STEPS", "LAZY_STEPS", "STREAMED_STEPS", "Step", "commit_steps"]


class Step(enum.Enum):
    QUEUE_STOP = "queue a SIGSTOP to every source task"
    CHECK_HELD = "CRIU still holds the source tree (else it ran on after its dump)"
    RELEASE_LOCK = "drop CRIU's network lock here (now, or alongside the commit)"
    ENTER_COMMITTED = "phase COMMITTED"
    MARK_COMMIT = "tell the guard the commit is going out (agent/lockguard.py)"
    SEND_COMMIT = "send Commit: a failed send is fatal"
    SEND_COMMIT_ANYWAY = "send Commit: a failed send is remembered, the commit goes on"
    WATCH_COMMITTED = "read Committed in the background (CRIU's clean-up is not downtime)"
    AWAIT_COMMITTED = "wait for Committed: the downtime ends"
    FORWARD_INFLIGHT = "forward the segments held while frozen to the destination"
    ENTER_SERVING = "phase SERVING_PAGES"


COLD_STEPS: Final = (
    Step.QUEUE_STOP,
    Step.CHECK_HELD,
    Step.RELEASE_LOCK,
    Step.ENTER_COMMITTED,
    Step.MARK_COMMIT,
    Step.SEND_COMMIT_ANYWAY,
    Step.WATCH_COMMITTED,
    Step.FORWARD_INFLIGHT,
)

LAZY_STEPS: Final = (
    Step.QUEUE_STOP,
    Step.RELEASE_LOCK,
    Step.MARK_COMMIT,
    Step.SEND_COMMIT,
    Step.FORWARD_INFLIGHT,
    Step.ENTER_COMMITTED,
    Step.AWAIT_COMMITTED,
    Step.ENTER_SERVING,
)


STREAMED_STEPS: Final = (
    Step.QUEUE_STOP,
    Step.RELEASE_LOCK,
    Step.ENTER_COMMITTED,
    Step.MARK_COMMIT,
    Step.SEND_COMMIT_ANYWAY,
    Step.FORWARD_INFLIGHT,
    Step.AWAIT_COMMITTED,
)


def commit_steps(*, lazy: bool, streamed: bool = False) -> tuple[Step, ...]:
    """The steps of the point of no return for a lazy final dump, a cold one, or a
    streamed cold one (lazy, but the destination holds every page before Restored)."""
    if streamed:
        return STREAMED_STEPS
    return LAZY_STEPS if lazy else COLD_STEPS
