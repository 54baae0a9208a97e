"""What a node says about itself in Hello: versions, CRIU features, CPU, free resources."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ferryman import wire
from ferryman.criu.client import Criu
from ferryman.host import procfs

PROTOCOL_VERSION = 1


async def local_hello(criu: Criu, node: str, state_dir: Path,
                      hidden_features: frozenset[str] = frozenset()) -> wire.Hello:
    version = await criu.check_version()
    features = await criu.features()
    for name in hidden_features:
        features[name] = False
    state_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one local mkdir
    with tempfile.TemporaryDirectory(dir=state_dir, prefix="cpuinfo-") as tmp:
        cpuinfo = await criu.cpuinfo_dump(Path(tmp))
    return wire.Hello(
        protocol_version=PROTOCOL_VERSION,
        node=node,
        criu_version=str(version),
        features=features,
        cpuinfo=cpuinfo,
        free_memory=procfs.memory_available(),
        free_disk=procfs.disk_free(state_dir),
    )
