"""ferryman.agent."""
