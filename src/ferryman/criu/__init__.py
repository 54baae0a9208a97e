"""ferryman.criu."""
