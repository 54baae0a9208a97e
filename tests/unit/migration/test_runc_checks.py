"""Pre-flight rows for a runc container."""

from __future__ import annotations

from ferryman.migration.runc_checks import CONTAINER_MODES, ContainerFacts, runc_rows
from ferryman.migration.verdict import Status, merge

BOTH = {"runc": True, "rsync": True}
RUNNING = ContainerFacts("c1", 4242, "/srv/b/c1")


def _verdict(**over: object) -> dict[tuple[str, str], Status]:
    kw: dict[str, object] = {"here": "a", "there": "b", "local_tools": BOTH,
                             "dest_features": {**BOTH, "lazy_pages": True},
                             "container": RUNNING, "postcopy_blocker": None,
                             "dirty_tracking": True}
    kw.update(over)
    rows = runc_rows(**kw)  # type: ignore[arg-type]
    return {(r.side, r.check): r.status for r in rows}


def test_all_present_and_running_passes() -> None:
    rows = runc_rows(here="a", there="b", local_tools=BOTH, dest_features=BOTH,
                     container=RUNNING, postcopy_blocker=None, dirty_tracking=True)
    assert all(r.status is Status.PASS for r in rows)
    v = merge(rows, [], list(CONTAINER_MODES))
    assert set(v.allowed_modes) == {"cold", "postcopy", "precopy", "hybrid"}
    assert "PID 4242" in next(r.detail for r in rows if r.check == "container")


def test_missing_tools_and_a_stopped_container_fail() -> None:
    got = _verdict(local_tools={"runc": False, "rsync": True}, dest_features={"rsync": False},
                   container=ContainerFacts("c1", problem="runc container 'c1' is paused",
                                            fix="resume it"))
    assert got[("source", "runc")] is Status.FAIL
    assert got[("destination", "rsync")] is Status.FAIL
    assert got[("destination", "runc")] is Status.WARN  # an agent that does not say
    assert got[("source", "container")] is Status.FAIL


def test_no_lazy_pages_rules_out_postcopy_and_hybrid_only() -> None:
    rows = runc_rows(here="a", there="b", local_tools=BOTH, dest_features=BOTH,
                     container=RUNNING, postcopy_blocker="b: no userfaultfd",
                     dirty_tracking=True)
    v = merge(rows, [], list(CONTAINER_MODES))
    assert set(v.allowed_modes) == {"cold", "precopy"}
    v = merge(rows, [], list(CONTAINER_MODES), "postcopy")
    assert not v.can_move


def test_no_soft_dirty_here_rules_out_precopy_and_hybrid_with_the_process_rows_words(
        ) -> None:
    rows = runc_rows(here="a", there="b", local_tools=BOTH, dest_features=BOTH,
                     container=RUNNING, postcopy_blocker=None, dirty_tracking=False)
    v = merge(rows, [], list(CONTAINER_MODES))
    assert set(v.allowed_modes) == {"cold", "postcopy"}
    row = next(r for r in rows if r.check == "kernel.dirty-tracking")
    assert row.status is Status.FAIL
    assert row.side == "source"
    assert row.modes == frozenset({"precopy", "hybrid"})
    assert "CONFIG_MEM_SOFT_DIRTY on a" in row.fix
    assert not merge(rows, [], list(CONTAINER_MODES), "hybrid").can_move
