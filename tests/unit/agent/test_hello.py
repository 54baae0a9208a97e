"""A node speaks only under its certificate's name (issue 16 finding 11)."""

from __future__ import annotations

from ferryman.agent.hello import identity_mismatch


def test_the_certificates_name_is_the_only_name() -> None:
    assert identity_mismatch("node-a", "node-a") is None
    why = identity_mismatch("node-a", "node-c")
    assert why is not None
    assert "'node-c'" in why
    assert "'node-a'" in why
