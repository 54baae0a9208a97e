"""ferryman.fs."""
