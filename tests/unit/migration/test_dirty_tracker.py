"""Which dirty-page tracker pre-copy uses on a source (issue 15): pure, from its features."""

from __future__ import annotations

import pytest

from ferryman.migration.plan import dirty_tracker, precopy_blocker


@pytest.mark.parametrize(("features", "container", "tracker"), [
    ({"mem_track": True, "mem_track_uffd": True}, False, "soft-dirty"),  # the proven one first
    ({"mem_track": True}, True, "soft-dirty"),
    ({"mem_track": False, "mem_track_uffd": True}, False, "uffd-wp"),
    ({"mem_track_uffd": True}, True, None),  # runc pre-dumps itself: soft-dirty only
    ({}, False, None),
    ({"mem_track": False, "mem_track_uffd": False}, False, None),
])
def test_soft_dirty_first_then_uffd_wp_for_process_trees(
        features: dict[str, bool], container: bool, tracker: str | None) -> None:
    assert dirty_tracker(features, container=container) == tracker
    blocker = precopy_blocker(features, "a", container=container)
    assert (blocker is None) == (tracker is not None)


def test_the_refusals_say_what_is_missing_and_what_to_do() -> None:
    why = precopy_blocker({}, "node-a")
    assert why is not None
    assert why.startswith("node-a: ")
    assert "CONFIG_MEM_SOFT_DIRTY" in why
    assert "userfaultfd" in why
    assert "--mode cold or postcopy" in why
    runc = precopy_blocker({"mem_track_uffd": True}, "node-a", container=True)
    assert runc is not None
    assert "runc" in runc
    assert "soft-dirty" in runc
    assert "--mode cold or postcopy" in runc
