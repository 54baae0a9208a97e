"""ferryman.host."""
