"""Where a node keeps ferryman's state: names every layer uses (the agent, the commands, the
launcher between them). Plain strings, without imports: cli/launch.py reads them before a
command has imported anything (each import there is time added to every command)."""

DEFAULT_STATE_DIR = "/var/lib/ferryman"
"""The agent's state directory unless ``--state-dir`` (or the config's ``state_dir``) says
otherwise; the commands look there for the agent's launcher and its CRIU facts."""

LAUNCHER_SOCKET = "launcher.sock"
"""The agent's launcher's socket in its state directory (cli/launcher.py serves it,
cli/launch.py finds it, agent/server.py starts it)."""
