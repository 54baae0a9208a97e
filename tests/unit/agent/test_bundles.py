"""The destination's container directories: one claim at a time, never a way out of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferryman.agent.bundles import BundleSlot
from ferryman.errors import RuncError


def _synced(slot: BundleSlot, root_path: str) -> None:
    """What rsync would have left: a bundle with a config.json naming ``root_path``."""
    (slot.bundle / "config.json").write_text(json.dumps({"root": {"path": root_path}}))


def test_one_migration_of_an_id_at_a_time(tmp_path: Path) -> None:
    first = BundleSlot(tmp_path, "web", "rootfs")
    first.claim()
    assert first.sync_targets() == {"bundle": tmp_path / "web" / "bundle"}
    second = BundleSlot(tmp_path, "web", "rootfs")
    with pytest.raises(RuncError, match="another migration"):
        second.claim()
    first.release(remove=True)
    assert not (tmp_path / "web").exists()
    second.claim()
    second.release(remove=False)
    assert (tmp_path / "web" / "bundle").is_dir()


def test_an_outside_rootfs_gets_its_own_directory_and_the_config_names_it(
        tmp_path: Path) -> None:
    slot = BundleSlot(tmp_path, "web", None)
    slot.claim()
    assert slot.sync_targets() == {"bundle": tmp_path / "web" / "bundle",
                                   "rootfs": tmp_path / "web" / "rootfs"}
    _synced(slot, "/srv/roots/web")  # the source's path
    slot.localize()
    config = json.loads((slot.bundle / "config.json").read_text())
    assert config["root"]["path"] == str(tmp_path / "web" / "rootfs")


def test_a_rootfs_linked_out_of_the_slot_is_refused(tmp_path: Path) -> None:
    slot = BundleSlot(tmp_path, "web", "rootfs")
    slot.claim()
    (slot.bundle / "rootfs").symlink_to("/etc")
    _synced(slot, "rootfs")
    with pytest.raises(RuncError, match="not a directory inside it"):
        slot.localize()


def test_a_config_json_link_is_never_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"root": {"path": "/srv/roots/web"}}))
    slot = BundleSlot(tmp_path / "bundles", "web", None)
    slot.claim()
    (slot.bundle / "config.json").symlink_to(elsewhere)
    with pytest.raises(RuncError, match=r"no usable config\.json"):
        slot.localize()
    assert json.loads(elsewhere.read_text())["root"]["path"] == "/srv/roots/web"
