"""What an agent shares between its peers, bounded: connections, migrations, buffered bytes.

Pure bookkeeping (no sockets): :mod:`ferryman.agent.server` and the sessions ask before they
take, and give back when done, so no peer, authenticated or not, can take it all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Limits:
    """An agent's caps (``serve`` options; the defaults suit a node that moves a few
    workloads at a time)."""

    sessions: int = 32  # authenticated connections at once
    handshakes: int = 16  # TLS handshakes in progress: the oldest goes when more arrive
    migrations: int = 4  # accepted Plans at once (each runs a root criu page server)
    buffered_bytes: int = 64 << 20  # incomplete frames held for all sessions together


@dataclass
class Slots:
    """At most ``limit`` holders at once."""

    limit: int
    held: int = 0

    def take(self) -> bool:
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    def give_back(self) -> None:
        self.held = max(0, self.held - 1)


@dataclass
class Oldest(Generic[K]):
    """Members in arrival order; adding one past ``limit`` names the oldest to drop."""

    limit: int
    _members: OrderedDict[K, None] = field(default_factory=OrderedDict)

    def add(self, key: K) -> K | None:
        """Add ``key``; the member to evict to stay within the limit, or None."""
        self._members[key] = None
        if len(self._members) > self.limit:
            oldest, _ = self._members.popitem(last=False)
            return oldest
        return None

    def discard(self, key: K) -> None:
        self._members.pop(key, None)

    def __len__(self) -> int:
        return len(self._members)


@dataclass
class BufferBudget:
    """Bytes held in incomplete frames, per holder, within one total ``limit``."""

    limit: int
    _held: dict[Hashable, int] = field(default_factory=dict)
    total: int = 0

    def claim(self, holder: Hashable, nbytes: int) -> bool:
        """``holder`` now holds ``nbytes`` (instead of what it held); False, changing
        nothing, when that would exceed the limit."""
        now = self.total - self._held.get(holder, 0) + nbytes
        if nbytes > 0 and now > self.limit:
            return False
        self.total = now
        if nbytes:
            self._held[holder] = nbytes
        else:
            self._held.pop(holder, None)
        return True

    def release(self, holder: Hashable) -> None:
        self.claim(holder, 0)
