"""Agent configuration: everything the agent needs, passed in (no globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ferryman.agent.limits import Limits
from ferryman.host.addresses import MovableNetwork
from ferryman.pki import NodeCredentials


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds for each wait; every state has a timeout."""

    handshake: float = 5.0  # TLS, from accept: an unauthenticated connection holds an fd
    hello: float = 30.0
    plan: float = 60.0
    transfer: float = 120.0  # between two messages while images stream
    iteration: float = 1800.0  # pre-copy: one pre-dump, until the next Iterate
    restore: float = 300.0
    commit: float = 120.0
    page_server_exit: float = 120.0
    page_tail: float = 3600.0  # post-copy: until every page has arrived


@dataclass(frozen=True, slots=True)
class AgentConfig:
    name: str
    listen_host: str
    listen_port: int
    creds: NodeCredentials
    state_dir: Path
    criu_bin: str = "criu"
    runc_bin: str = "runc"
    runc_root: Path = Path("/run/runc")  # runc's --root for restored containers
    bundle_root: Path | None = None  # containers arriving here; None: STATE_DIR/bundles
    check_roots: tuple[Path, ...] = ()  # pre-flight: answer about any file under these
    movable: tuple[MovableNetwork, ...] = ()  # what peers may move here (--movable-addresses)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    launcher: bool = True  # STATE_DIR/launcher.sock starts this node's commands warm
    prefault: str = "auto"  # memory made resident before a freeze (migration/prefault.py)
    hidden_features: frozenset[str] = frozenset()  # test-only: pretend CRIU lacks these
    test_pause_after_restore: float = 0.0  # test-only: widen the RESTORED window

    @property
    def bundles(self) -> Path:
        """Where containers restored here keep their bundles (agent/bundles.py)."""
        return self.bundle_root if self.bundle_root is not None else self.state_dir / "bundles"
