"""The memory page size every page count in ferryman is multiplied by.

CRIU's ``stats-dump`` (``pages_written``, ``pages_skipped_parent``), the lazy-pages daemon's
"UFFD transferred pages", ``/proc/PID/pagemap`` entries and the convergence policies all count
pages of this size. It is a constant, not ``sysconf(SC_PAGE_SIZE)``: both nodes must count
alike, and the project's machines and guests are all x86-64 (4 KiB pages).
"""

from __future__ import annotations

from typing import Final

PAGE_SIZE: Final = 4096
