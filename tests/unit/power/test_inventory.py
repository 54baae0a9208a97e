"""Plug addresses and the inventory file (node name -> plug address)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.power.address import PlugAddress
from ferryman.power.errors import PlugInventoryError
from ferryman.power.inventory import load_inventory, parse_inventory, resolve_target


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.168.1.20", PlugAddress("192.168.1.20", 9999)),
        ("plug-3.lan:10000", PlugAddress("plug-3.lan", 10000)),
        ("fe80::1", PlugAddress("fe80::1", 9999)),
        ("[fe80::1]:9998", PlugAddress("fe80::1", 9998)),
        ("[::1]", PlugAddress("::1", 9999)),
        (" 10.0.0.1 ", PlugAddress("10.0.0.1", 9999)),
    ],
)
def test_addresses_parse_with_and_without_port(text: str, expected: PlugAddress) -> None:
    assert PlugAddress.parse(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "host:0", "host:70000", "host:x", "[::1",
                                  "[::1]x", "two words", "a/b"])
def test_malformed_addresses_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        PlugAddress.parse(text)


def test_address_prints_as_host_port_with_brackets_for_ipv6() -> None:
    assert str(PlugAddress("10.0.0.1")) == "10.0.0.1:9999"
    assert str(PlugAddress("::1", 9998)) == "[::1]:9998"


def test_top_level_entries_map_nodes_to_plugs() -> None:
    inventory = parse_inventory('node-a = "10.0.0.20"\n"node b" = "10.0.0.21:9000"\n',
                                source="inv.toml")
    assert inventory.resolve("node-a") == PlugAddress("10.0.0.20")
    assert inventory.resolve("node b") == PlugAddress("10.0.0.21", 9000)
    assert inventory.resolve("node-c") is None


def test_a_plugs_table_lets_the_file_hold_other_settings() -> None:
    inventory = parse_inventory('[cluster]\nname = "lab"\n[plugs]\nnode-a = "10.0.0.20"\n',
                                source="inv.toml")
    assert dict(inventory.plugs) == {"node-a": PlugAddress("10.0.0.20")}


@pytest.mark.parametrize(
    ("text", "message"),
    [('node-a = "10.0.0.20', "not valid TOML"), ("node-a = 20", "must be a string"),
     ('node-a = "10.0.0.20:99999"', "port out of range"),
     ('[plugs]\nnode-a = ["x"]', "must be a string")],
)
def test_bad_inventory_names_the_file_and_the_node(text: str, message: str) -> None:
    with pytest.raises(PlugInventoryError, match=message) as caught:
        parse_inventory(text, source="inv.toml")
    assert caught.value.path == "inv.toml"
    assert caught.value.exit_code == 26


def test_missing_inventory_file_is_an_inventory_error(tmp_path: Path) -> None:
    with pytest.raises(PlugInventoryError, match="cannot read"):
        load_inventory(tmp_path / "absent.toml")


def test_inventory_file_is_read_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "plugs.toml"
    path.write_text('node-a = "127.0.0.1:1234"\n', encoding="utf-8")
    assert load_inventory(path).resolve("node-a") == PlugAddress("127.0.0.1", 1234)


def test_target_is_a_node_name_first_then_a_host() -> None:
    inventory = parse_inventory('node-a = "10.0.0.20"', source="inv.toml")
    assert resolve_target("node-a", inventory) == PlugAddress("10.0.0.20")
    assert resolve_target("10.0.0.9:1", inventory) == PlugAddress("10.0.0.9", 1)
    assert resolve_target("node-a", None) == PlugAddress("node-a")
