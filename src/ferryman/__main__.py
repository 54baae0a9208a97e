"""``python -m ferryman``."""

from ferryman.cli.launch import entry

entry()
