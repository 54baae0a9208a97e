"""Which FIFOs the destination shares with the frozen source (agent/fifos.py's pure part)."""

from __future__ import annotations

from ferryman.agent.fifos import Identity, shared_pipes

BOOT = "8d425eef-e4f2-4a08-bfed-e399f68725ff"
OTHER_BOOT = "0b7f5c1e-3d2a-4e55-9a10-6c2f1d9e8b77"
PATHS = {100: "/srv/queue.fifo", 200: "/srv/other.fifo"}


def here(table: dict[str, tuple[int, int]]) -> Identity:
    """What each path is on the destination: (device, inode) of a FIFO there, or None."""
    return table.get


def test_same_kernel_and_same_inode_is_the_sources_own_pipe() -> None:
    identity = here({"/srv/queue.fifo": (66, 100), "/srv/other.fifo": (66, 200)})
    assert shared_pipes(BOOT, BOOT, {100: 66}, PATHS, identity) == {100: "/srv/queue.fifo"}


def test_another_kernel_never_shares_a_pipe() -> None:
    identity = here({"/srv/queue.fifo": (66, 100)})
    assert shared_pipes(BOOT, OTHER_BOOT, {100: 66}, PATHS, identity) == {}
    assert shared_pipes("", "", {100: 66}, PATHS, identity) == {}


def test_another_device_or_inode_at_the_path_is_another_pipe() -> None:
    assert shared_pipes(BOOT, BOOT, {100: 66}, PATHS, here({"/srv/queue.fifo": (67, 100)})) == {}
    assert shared_pipes(BOOT, BOOT, {100: 66}, PATHS, here({"/srv/queue.fifo": (66, 101)})) == {}
    assert shared_pipes(BOOT, BOOT, {100: 66}, PATHS, here({})) == {}


def test_only_fifos_the_source_named_are_left_alone() -> None:
    identity = here({"/srv/queue.fifo": (66, 100), "/srv/other.fifo": (66, 200)})
    assert shared_pipes(BOOT, BOOT, {}, PATHS, identity) == {}
