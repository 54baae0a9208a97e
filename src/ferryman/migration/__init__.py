"""ferryman.migration."""
