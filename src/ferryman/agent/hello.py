"""What a node says about itself in Hello: versions, CRIU features, CPU, free resources."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ferryman import testhooks, wire
from ferryman.agent.channel import Channel
from ferryman.criu.client import Criu, CriuFacts
from ferryman.errors import PeerLost, PeerRejected
from ferryman.host import procfs, wptrack
from ferryman.migration.plan import postcopy_blocker
from ferryman.pki import tls

# postcopy_blocker moved to migration/plan.py (pure); importable from here too.
__all__ = ["CAP_SYS_RESOURCE", "LAZY_PIPE_SIZE", "PROTOCOL_VERSION", "exchange_hello",
           "identity_mismatch", "lazy_pipes_ok", "local_hello", "node_features",
           "postcopy_blocker"]

PROTOCOL_VERSION = 1
LAZY_PIPE_SIZE = 4 << 20
CAP_SYS_RESOURCE = 24


def lazy_pipes_ok() -> bool:
    """Lazy pages need 4 MiB pipes: fs.pipe-max-size, or CAP_SYS_RESOURCE to exceed it."""
    if int(procfs.read_sysctl("fs.pipe-max-size")) >= LAZY_PIPE_SIZE:
        return True
    for line in (procfs.PROC / "self" / "status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def identity_mismatch(said: str, certified: str) -> str | None:
    """Why a peer whose certificate names ``certified`` may not call itself ``said`` in its
    Hello, or None: a node speaks only under its certificate's name (logs, reports and
    pre-flight rows name nodes by what their Hello says)."""
    if said == certified:
        return None
    return (f"the peer's certificate names node {certified!r} but its Hello says {said!r}: "
            f"a node may only speak as the node its certificate names")


async def exchange_hello(ch: Channel, ours: wire.Hello, timeout: float) -> wire.Hello:
    """Send our Hello and return the destination's (whose node must be its certificate's)."""
    await ch.send(ours)
    try:
        theirs = await ch.expect((wire.Hello,), timeout)
    except PeerLost as exc:
        # TLS 1.3: a server that refuses our certificate just closes after the handshake.
        raise PeerRejected(ch.peer, f"{ch.peer} closed the connection at hello: it refused "
                           "this node's certificate",
                           hint="issue this node's certificate from the cluster's CA: "
                                "'ferryman pki issue NAME --pki DIR'") from exc
    why = identity_mismatch(theirs.node, tls.peer_name(ch.writer.get_extra_info("ssl_object")))
    if why is not None:
        raise PeerRejected(ch.peer, f"{ch.peer}: {why}",
                           hint="start that agent with the name of its certificate "
                                "('ferryman serve --name NAME')")
    return theirs


async def node_features(criu: Criu, state_dir: Path,
                        hidden: Iterable[str] = ()) -> tuple[CriuFacts, dict[str, bool]]:
    """CRIU's (cached) facts and this node's feature map: CRIU's features, whether lazy
    pages get their 4 MiB pipes, and the test-only hidden ones (serve --test-hide-feature)."""
    state_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one local mkdir
    facts = await criu.facts(state_dir)
    features = dict(facts.features)
    features["lazy_pipes"] = lazy_pipes_ok()
    features["mem_track_uffd"] = features.get("mem_track_uffd", False) and \
        wptrack.kernel_supports()
    for name in (*hidden, *testhooks.hidden_features()):
        features[name] = False
    return facts, features


async def local_hello(criu: Criu, node: str, state_dir: Path,
                      hidden_features: frozenset[str] = frozenset()) -> wire.Hello:
    facts, features = await node_features(criu, state_dir, hidden_features)
    return wire.Hello(
        protocol_version=PROTOCOL_VERSION,
        node=node,
        criu_version=str(facts.version),
        features=features,
        cpuinfo=facts.cpuinfo,
        free_memory=procfs.memory_available(),
        free_disk=procfs.disk_free(state_dir),
    )
