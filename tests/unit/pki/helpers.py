"""Shared helpers for the PKI unit tests: a fixed clock and node issuing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ferryman.pki import Clock, NodeCredentials, issue_node, load_node, system_clock

# A fixed instant for tests that only inspect certificates (no TLS library involved).
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def fixed_clock(at: datetime = NOW) -> Clock:
    return lambda: at


def live_node(directory: Path, name: str) -> NodeCredentials:
    """Issue and load ``name`` with the real clock (for files handed to OpenSSL)."""
    issue_node(directory, name, [], clock=system_clock)
    return load_node(directory, name)
