"""Fixtures for the PKI unit tests: PKI directories in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.pki import init_ca, system_clock
from tests.unit.pki.helpers import fixed_clock


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    """A PKI directory with a CA made at helpers.NOW."""
    directory = tmp_path / "pki"
    init_ca(directory, clock=fixed_clock())
    return directory


@pytest.fixture
def live_pki(tmp_path: Path) -> Path:
    """A PKI directory made with the real clock, for tests that hand files to OpenSSL."""
    directory = tmp_path / "live"
    init_ca(directory, clock=system_clock)
    return directory
