"""``python -m ferryman``."""

from __future__ import annotations

from ferryman.cli.main import entry

entry()
