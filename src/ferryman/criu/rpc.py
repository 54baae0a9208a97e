"""Typed access to CRIU's generated RPC messages (pycriu's ``rpc_pb2``)."""

from __future__ import annotations

from typing import Any

try:
    from pycriu import rpc_pb2 as _rpc
except ImportError as exc:  # pragma: no cover - depends on the installation
    from ferryman.errors import CriuMissing

    raise CriuMissing(
        "pycriu is not installed (run 'scripts/install-criu.sh --python PYTHON')"
    ) from exc

Req: Any = _rpc.criu_req
Resp: Any = _rpc.criu_resp
Opts: Any = _rpc.criu_opts

DUMP: int = _rpc.DUMP
RESTORE: int = _rpc.RESTORE
PRE_DUMP: int = _rpc.PRE_DUMP
NOTIFY: int = _rpc.NOTIFY
CPUINFO_DUMP: int = _rpc.CPUINFO_DUMP
CPUINFO_CHECK: int = _rpc.CPUINFO_CHECK
FEATURE_CHECK: int = _rpc.FEATURE_CHECK
VERSION: int = _rpc.VERSION
NFTABLES: int = _rpc.NFTABLES
HAS_TRACK_MEM_UFFD: bool = "track_mem_uffd" in _rpc.criu_opts.DESCRIPTOR.fields_by_name
"""pycriu was generated from a CRIU with scripts/criu-patches/uffd-track-mem.patch."""
