"""Which deleted files CRIU copies as ghosts, and the --ghost-limit they need."""

from __future__ import annotations

import pytest

from ferryman.host.ghosts import DEFAULT_LIMIT, MAX_LIMIT, ghost_limit, is_ghost_name


@pytest.mark.parametrize(("target", "ghost"), [
    ("/var/tmp/scratch.tmp (deleted)", True),
    ("/usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)", True),
    ("/dev/shm/segment (deleted)", True),
    ("/var/tmp/scratch.tmp", False),
    ("/memfd:jit (deleted)", False),
    ("/dev/zero (deleted)", False),
    ("/SYSV00000000 (deleted)", False),
    ("/anon_hugepage (deleted)", False),
    ("socket:[1234]", False),
    ("anon_inode:[eventfd]", False),
])
def test_ghost_names(target: str, ghost: bool) -> None:
    assert is_ghost_name(target) is ghost


def test_criu_default_limit_is_kept_until_a_ghost_exceeds_it() -> None:
    assert ghost_limit(0) is None
    assert ghost_limit(DEFAULT_LIMIT) is None
    assert ghost_limit(DEFAULT_LIMIT + 1) == DEFAULT_LIMIT + 1
    assert ghost_limit(3 << 30) == 3 << 30
    assert ghost_limit(5 << 30) == MAX_LIMIT  # CRIU's RPC field: it refuses such a ghost
