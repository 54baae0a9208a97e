"""What a destination makes resident before the freeze (pure: the node's facts in)."""

from __future__ import annotations

import pytest

from ferryman.migration.prefault import (
    AUTO_MIN_BYTES,
    KEEP_FREE_BYTES,
    RESIDENT_BYTES_PER_S,
    Prefault,
    came_resident,
    plan_prefault,
)

GIB = 1 << 30
PLENTY = 64 * GIB


def plan(setting: str = "auto", *, reported: bool = True, rss: int = GIB,
         pages_frozen: bool = True, lazy: bool = False, available: int = PLENTY) -> Prefault:
    return plan_prefault(setting, reported=reported, rss_bytes=rss, pages_frozen=pages_frozen,
                         lazy=lazy, available=available)


def test_cold_takes_the_tree_s_memory_and_its_pages_page_cache() -> None:
    assert plan() == Prefault(total=2 * GIB, pages=GIB)


def test_pre_copy_takes_only_the_restore_s_share() -> None:
    """Its earlier image sets arrive while the workload runs."""
    assert plan(pages_frozen=False) == Prefault(total=GIB, pages=0)


@pytest.mark.parametrize("setting", ["auto", "on"])
def test_a_lazy_restore_takes_nothing(setting: str) -> None:
    assert plan(setting, lazy=True) == Prefault()


def test_auto_only_where_the_hypervisor_takes_free_memory() -> None:
    assert plan(reported=False) == Prefault()
    assert plan("on", reported=False) == Prefault(total=2 * GIB, pages=GIB)


def test_auto_leaves_small_migrations_alone_and_on_does_not() -> None:
    small = AUTO_MIN_BYTES // 2 - 4096  # twice this is just under the floor
    assert plan(rss=small) == Prefault()
    assert plan(rss=AUTO_MIN_BYTES // 2) == Prefault(total=AUTO_MIN_BYTES,
                                                    pages=AUTO_MIN_BYTES // 2)
    assert plan("on", rss=small) == Prefault(total=2 * small, pages=small)


def test_off_and_an_unknown_size_take_nothing() -> None:
    assert plan("off") == Prefault()
    assert plan("on", rss=0) == Prefault()


def test_never_more_than_half_what_the_node_can_spare() -> None:
    """A Plan's size is the peer's word: four of them at once never take it all."""
    p = plan(available=2 * GIB + KEEP_FREE_BYTES)
    assert p == Prefault(total=GIB, pages=GIB)
    assert plan(rss=PLENTY * 4) == Prefault(total=(PLENTY - KEEP_FREE_BYTES) // 2,
                                           pages=(PLENTY - KEEP_FREE_BYTES) // 2)
    assert plan(available=KEEP_FREE_BYTES // 2) == Prefault()


def test_an_unknown_setting_is_a_bug() -> None:
    with pytest.raises(ValueError, match="prefault setting"):
        plan("always")


CHUNK = 64 << 20


def test_chunks_made_resident_at_gb_per_s_were_resident_already() -> None:
    """The test host: 64 MiB in 20-30 ms while its hypervisor holds the memory, ~190 ms
    once it took it back."""
    assert came_resident([(CHUNK, 0.020), (CHUNK, 0.030), (CHUNK, 0.045)])
    assert not came_resident([(CHUNK, 0.190)])


def test_one_slow_chunk_among_quick_ones_keeps_the_reserve() -> None:
    """Past the hypervisor's resident share, the frozen window would pay for the rest."""
    quick = [(CHUNK, 0.025)] * 20
    assert not came_resident([*quick, (CHUNK, 0.185), *quick])
    assert not came_resident([*quick, (CHUNK, CHUNK / RESIDENT_BYTES_PER_S * 1.01)])


def test_no_chunk_is_no_evidence() -> None:
    assert not came_resident([])
    assert came_resident([(CHUNK, 0.0)])  # a clock too coarse to see it: quick
