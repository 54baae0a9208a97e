"""ferryman.targets."""
