"""ferryman.power."""
