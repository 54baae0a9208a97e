"""Where a node keeps ferryman's state: names every layer uses (the agent, the commands, the
launcher between them)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

DEFAULT_STATE_DIR: Final = Path("/var/lib/ferryman")
"""The agent's state directory unless ``--state-dir`` (or the config's ``state_dir``) says
otherwise; the commands look there for the agent's launcher and its CRIU facts."""

LAUNCHER_SOCKET: Final = "launcher.sock"
"""The agent's launcher's socket in its state directory (cli/launcher.py serves it,
cli/launch.py finds it, agent/server.py starts it)."""
