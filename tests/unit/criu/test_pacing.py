"""The page transfer's cap: validation, the byte rate criu gets, and its environment."""

from __future__ import annotations

import pytest

from ferryman.criu.pacing import (
    PAGE_RATE_ENV,
    PAGE_TIMEOUT_ENV,
    bytes_per_s,
    check_max_bandwidth,
    criu_env,
)
from ferryman.errors import UsageError


def test_mbit_to_bytes() -> None:
    assert bytes_per_s(200) == 25_000_000
    assert bytes_per_s(1000) == 125_000_000
    assert bytes_per_s(0.5) == 62_500


@pytest.mark.parametrize("mbit", [0, -1, 0.5, 34_001, float("inf"), float("nan")])
def test_caps_criu_cannot_apply_are_refused(mbit: float) -> None:
    with pytest.raises(UsageError, match="--max-bandwidth must be"):
        check_max_bandwidth(mbit)


def test_caps_in_range_pass() -> None:
    assert check_max_bandwidth(1) == 1
    assert check_max_bandwidth(200) == 200
    assert check_max_bandwidth(34_000) == 34_000
    assert bytes_per_s(34_000) < 2**32 - 1  # SO_MAX_PACING_RATE as CRIU passes it


def test_no_cap_gives_criu_our_environment_and_the_stall_bound() -> None:
    assert criu_env(None, {"PATH": "/bin"}) == {"PATH": "/bin", PAGE_TIMEOUT_ENV: "5000"}


def test_a_cap_adds_the_rate_to_the_base_environment() -> None:
    base = {"PATH": "/bin", "HOME": "/root"}
    env = criu_env(200, base)
    assert env == {"PATH": "/bin", "HOME": "/root", PAGE_RATE_ENV: "25000000",
                   PAGE_TIMEOUT_ENV: "5000"}
    assert PAGE_RATE_ENV not in base  # the caller's environment is not touched
