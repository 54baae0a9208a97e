"""What ``ferryman migrate`` says when a migration ended badly (agent/source_outcome.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from ferryman.agent.role import SourceRole
from ferryman.agent.source_outcome import conclude
from ferryman.errors import FerrymanError, WorkloadLost
from ferryman.migration.report import Result
from ferryman.migration.source_events import Outcome


def _role() -> SourceRole:
    return cast(SourceRole, SimpleNamespace(pid=5644, report=SimpleNamespace(result=None)))


@pytest.mark.parametrize("served_all", [True, False])
def test_a_tree_that_did_not_survive_names_the_destination_only_if_its_pages_all_went(
        served_all: bool) -> None:
    role = _role()
    with pytest.raises(FerrymanError) as info:
        conclude(role, Outcome.NOT_SURVIVED, FerrymanError("10.77.0.2:7070 closed"),
                 commit_error=None, confirm_error=None, served_all=served_all)
    line = info.value.one_line()
    assert line.startswith("workload PID 5644 did not survive the failed migration: ")
    assert ("ferryman orphans" in line) is served_all
    assert role.report.result is Result.LOST


def test_lost_in_the_tail_is_exit_9() -> None:
    with pytest.raises(WorkloadLost) as info:
        conclude(_role(), Outcome.LOST, FerrymanError("link cut"), commit_error=None,
                 confirm_error=None)
    assert info.value.exit_code == 9
