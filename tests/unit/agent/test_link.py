"""The link rate from a small and a large round trip."""

from __future__ import annotations

import pytest

from ferryman.agent.link import link_rate


def test_the_extra_bytes_over_the_extra_time() -> None:
    # 4 MiB more took 40 ms more: ~105 MB/s, whatever the round trip itself costs
    assert link_rate(4 << 20, 0.001, 0.041) == pytest.approx((4 << 20) / 0.040)
    assert link_rate(4 << 20, 0.101, 0.141) == pytest.approx((4 << 20) / 0.040)


def test_no_rate_when_the_large_test_was_not_slower() -> None:
    assert link_rate(4 << 20, 0.002, 0.002) is None
    assert link_rate(4 << 20, 0.003, 0.002) is None
    assert link_rate(0, 0.001, 0.002) is None


def test_our_framing_cost_is_not_counted_as_the_links() -> None:
    assert link_rate(4 << 20, 0.001, 0.061, framing_s=0.020) == pytest.approx((4 << 20) / 0.040)
    assert link_rate(4 << 20, 0.001, 0.021, framing_s=0.020) is None
