"""The migration modes: the one place their names are spelled.

A :class:`Mode` is a ``StrEnum``: its value is what the control protocol carries
(``Plan.mode``), what reports and verdicts write, and what ``--mode`` accepts, so agents that
compare strings and agents that compare members understand each other. Everything that depends
on the mode asks the member (:attr:`Mode.lazy`, :attr:`Mode.pre_copies`,
:attr:`Mode.lazy_from_start`) instead of listing names.

- ``cold``: freeze, dump every page into the destination's page server, restore.
- ``postcopy``: freeze, dump without memory, restore at once; the pages follow on demand.
- ``precopy``: pre-dumps while the workload runs, then a cold final dump of the dirty rest.
- ``hybrid``: pre-dumps, then a lazy final dump.
- ``auto``: asked for on the command line only; the pre-flight turns it into one of the four
  before anything is planned (docs/ARCHITECTURE.md, "Where each decision lives").

Ground floor: imports nothing of ferryman, so ``wire/`` may use it.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["LAZY_MODES", "MODES", "PRE_COPY_MODES", "Mode"]


class Mode(enum.StrEnum):
    """A migration mode, or ``AUTO`` (to be decided by the pre-flight)."""

    COLD = "cold"
    POSTCOPY = "postcopy"
    PRECOPY = "precopy"
    HYBRID = "hybrid"
    AUTO = "auto"

    @property
    def lazy(self) -> bool:
        """The final dump keeps the memory on the source, served on demand (lazy pages)."""
        return self in (Mode.POSTCOPY, Mode.HYBRID)

    @property
    def pre_copies(self) -> bool:
        """Pre-dumps run while the workload runs (soft-dirty tracking, ``mem_track``)."""
        return self in (Mode.PRECOPY, Mode.HYBRID)

    @property
    def lazy_from_start(self) -> bool:
        """The Plan's own dump is lazy (``Plan.lazy``): lazy without pre-copy first."""
        return self.lazy and not self.pre_copies

    @property
    def decided(self) -> bool:
        """One of the four modes a migration carries out (not ``AUTO``)."""
        return self is not Mode.AUTO


MODES: Final[tuple[Mode, ...]] = (Mode.COLD, Mode.POSTCOPY, Mode.PRECOPY, Mode.HYBRID)
"""The modes a migration carries out, in the order verdicts and ``check`` list them."""

LAZY_MODES: Final = frozenset(m for m in MODES if m.lazy)
PRE_COPY_MODES: Final = frozenset(m for m in MODES if m.pre_copies)
