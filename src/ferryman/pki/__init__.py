"""Cluster PKI: one CA per cluster, one ECDSA P-256 certificate per node, TLS 1.3 contexts.

``init_ca`` and ``issue_node`` write a PKI directory, ``load_node`` checks and returns a node's
credentials (absolute paths, as CRIU's ``--tls-*`` options require), and
``ferryman.pki.tls`` turns them into ``ssl.SSLContext`` objects.
"""

from __future__ import annotations

from ferryman.pki.certs import Clock, IpAddress, system_clock, validate_node_name
from ferryman.pki.store import (
    CaFiles,
    NodeCredentials,
    NodeFiles,
    init_ca,
    issue_node,
    load_node,
)

__all__ = [
    "CaFiles",
    "Clock",
    "IpAddress",
    "NodeCredentials",
    "NodeFiles",
    "init_ca",
    "issue_node",
    "load_node",
    "system_clock",
    "validate_node_name",
]
