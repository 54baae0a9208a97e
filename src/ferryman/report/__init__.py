"""ferryman.report."""
