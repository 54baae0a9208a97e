"""Which paths an agent answers a peer about: what any local user could see, or what its
operator opened up (``serve --check-roots``).

A pre-flight CheckRequest names paths, and the destination says whether each exists and how
it compares (type, size, mtime): for an arbitrary path that is an oracle (the review had it
say how many bytes /etc/shadow has). The agent runs as root, so it decides as an unprivileged
local user would fare: a path whose every directory (as resolved) others may search, and
which others may read (a directory: search), or that does not exist past such directories
(any local user learns that much). Everything else is withheld: the answer then says neither
that it exists nor that it does not.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path


def answerable(path: str, roots: Sequence[Path] = ()) -> bool:
    """Whether this node may tell a peer what ``path`` is (absolute paths only; ``roots``
    resolved)."""
    if not Path(path).is_absolute():
        return False
    real = Path(path).resolve()
    if any(real.is_relative_to(root) for root in roots):
        return True
    current = Path("/")
    for part in real.parts[1:]:
        try:
            st = current.stat()
        except OSError:
            return True  # gone past public directories: any local user sees as much
        if not st.st_mode & stat.S_IXOTH:
            return False
        current = current / part
    try:
        st = current.stat()
    except OSError:
        return True
    need = stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else stat.S_IROTH
    return bool(st.st_mode & need)
