"""Inventory file: which plug powers which node. TOML, node name -> plug address::

    node-a = "192.168.1.20"
    node-b = "192.168.1.21:9999"

The same entries may instead sit in a ``[plugs]`` table, to share a file with other settings.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ferryman.power.address import PlugAddress
from ferryman.power.errors import PlugInventoryError


@dataclass(frozen=True, slots=True)
class Inventory:
    source: str
    plugs: Mapping[str, PlugAddress] = field(default_factory=dict)

    def resolve(self, target: str) -> PlugAddress | None:
        """The plug of node ``target``, or None if the inventory does not list it."""
        return self.plugs.get(target)


def parse_inventory(text: str, *, source: str) -> Inventory:
    """Parse inventory TOML; ``source`` names it in errors. Raises PlugInventoryError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlugInventoryError(source, f"not valid TOML: {exc}") from exc
    table = data.get("plugs")
    entries = table if isinstance(table, dict) else data
    plugs: dict[str, PlugAddress] = {}
    for node, value in entries.items():
        if not isinstance(value, str):
            raise PlugInventoryError(source, f"node {node!r}: the plug address must be a string")
        try:
            plugs[node] = PlugAddress.parse(value)
        except ValueError as exc:
            raise PlugInventoryError(source, f"node {node!r}: {exc}") from exc
    return Inventory(source, MappingProxyType(plugs))


def load_inventory(path: Path) -> Inventory:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlugInventoryError(str(path), f"cannot read: {exc}",
                                 hint="give --inventory the path of a readable TOML file") from exc
    return parse_inventory(text, source=str(path))


def resolve_target(target: str, inventory: Inventory | None) -> PlugAddress:
    """A node name listed in ``inventory``, else ``host``/``host:port``. Raises ValueError."""
    if inventory is not None:
        address = inventory.resolve(target)
        if address is not None:
            return address
    return PlugAddress.parse(target)
