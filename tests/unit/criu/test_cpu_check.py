"""The destination's CPU check: a source of this very CPU is compatible without a criu run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ferryman.criu.client import Criu, CriuFacts, CriuVersion

OURS = b"\x01cpuinfo of this node's CPU"


def _criu_without_binary() -> Criu:
    """A Criu whose binary does not exist: any criu run it tried would fail."""
    criu = Criu("/nonexistent/criu")
    criu._facts = CriuFacts(CriuVersion(4, 2, 1), {}, OURS)  # as facts() leaves them
    return criu


def test_the_node_s_own_cpuinfo_needs_no_criu_run(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo.img").write_bytes(OURS)
    assert asyncio.run(_criu_without_binary().cpuinfo_check(tmp_path)) is None


def test_another_cpu_s_is_asked_of_criu(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo.img").write_bytes(OURS + b", another model")
    # asked: the missing binary is the answer (a refusal, never taken as compatible)
    assert asyncio.run(_criu_without_binary().cpuinfo_check(tmp_path)) == \
        "/nonexistent/criu not found"
