"""Podman's files and records, pure: the bbolt reader on a file laid out as bbolt lays it,
config.dump, network.status, the Plan target, the restore's CRIU configuration."""

from __future__ import annotations

import json
import struct
import tarfile
from pathlib import Path

import pytest

from ferryman.agent.podman import PlannedPodman, plan_kind
from ferryman.errors import RemoteProtocolError
from ferryman.targets import podman as pm
from ferryman.targets import podman_nat as nat
from ferryman.targets.boltdb import (
    BRANCH_PAGE,
    BUCKET_LEAF,
    LEAF_PAGE,
    MAGIC,
    META_PAGE,
    BoltError,
    BoltFile,
)

PAGE = 4096
Item = tuple[bytes, bytes, bool]


def _leaf(items: list[Item], pgid: int = 0) -> bytes:
    """A leaf page (header, elements, then keys and values), as bbolt writes one."""
    head = struct.pack("<QHHI", pgid, LEAF_PAGE, len(items), 0)
    elems, data = b"", b""
    for i, (k, v, is_bucket) in enumerate(items):
        pos = (len(items) - i) * 16 + len(data)
        elems += struct.pack("<IIII", BUCKET_LEAF if is_bucket else 0, pos, len(k), len(v))
        data += k + v
    return head + elems + data


def _inline(items: list[Item]) -> bytes:
    return struct.pack("<QQ", 0, 0) + _leaf(items)


def _meta(pgid: int, root: int, txid: int) -> bytes:
    body = struct.pack("<IIIIQQQQQQ", MAGIC, 2, PAGE, 0, root, 0, 2, 6, txid, 0)
    return (struct.pack("<QHHI", pgid, META_PAGE, 0, 0) + body).ljust(PAGE, b"\0")


def _db(root_items: list[Item], *, branch: bool = False) -> bytes:
    """Meta pages 0 and 1 (1 current), page 2 free, root bucket at page 3 (or a branch
    at 3 over leaves 4 and 5)."""
    pages = [_meta(0, 3, 1), _meta(1, 3, 2), b"\0" * PAGE]
    if branch:
        half = len(root_items) // 2
        head = struct.pack("<QHHI", 3, BRANCH_PAGE, 2, 0)
        k1, k2 = root_items[0][0], root_items[half][0]
        elems = struct.pack("<IIQ", 32, len(k1), 4) + struct.pack("<IIQ", 16 + len(k1),
                                                                    len(k2), 5)
        pages += [(head + elems + k1 + k2).ljust(PAGE, b"\0"),
                  _leaf(root_items[:half], 4).ljust(PAGE, b"\0"),
                  _leaf(root_items[half:], 5).ljust(PAGE, b"\0")]
    else:
        pages.append(_leaf(root_items, 3).ljust(PAGE, b"\0"))
    return b"".join(pages)


CONFIG = {"id": "ab" * 32, "name": "web", "conmonPidFile": "/run/containers/storage/x/conmon.pid",
          "pid_file": "/elsewhere/pidfile", "labels": {"app": "echo"}}


def _podman_db(branch: bool = False) -> bytes:
    ctr = _inline([(b"config", json.dumps(CONFIG).encode(), False),
                   (b"networks", _inline([(b"podman", b'{"aliases":["abababababab","web-a"],'
                                                      b'"interface_name":"eth0"}', False)]),
                    True),
                   (b"state", b"{}", False)])
    items: list[Item] = [(b"all-ctrs", _inline([]), True),
                         (b"ctr", _inline([(CONFIG["id"].encode(), ctr, True)]), True),
                         (b"pod", _inline([]), True), (b"vol", _inline([]), True)]
    return _db(items, branch=branch)


@pytest.mark.parametrize("branch", [False, True])
def test_record_is_read_from_nested_inline_buckets(tmp_path: Path, branch: bool) -> None:
    db = tmp_path / "bolt_state.db"
    db.write_bytes(_podman_db(branch))
    config, nets = pm.read_record(db, CONFIG["id"])  # type: ignore[arg-type]
    assert config == CONFIG
    assert nets == {"podman": {"aliases": ["abababababab", "web-a"], "interface_name": "eth0"}}


def test_unknown_container_and_garbage_are_one_line_errors(tmp_path: Path) -> None:
    db = tmp_path / "bolt_state.db"
    db.write_bytes(_podman_db())
    with pytest.raises(pm.PodmanError, match="no record"):
        pm.read_record(db, "cd" * 32)
    with pytest.raises(BoltError):
        BoltFile(b"\0" * 3 * PAGE)


def test_config_dump_drops_the_short_id_alias_and_this_nodes_default_paths() -> None:
    nets = {"podman": {"aliases": ["abababababab"], "interface_name": "eth0"}}
    out = pm.config_dump(CONFIG, nets, Path("/run/containers/storage"))
    assert out["newNetworks"] == {"podman": {"interface_name": "eth0"}}
    assert out["conmonPidFile"] == ""  # Podman's import makes its default again
    assert out["pid_file"] == "/elsewhere/pidfile"  # chosen by the user: kept
    assert out["labels"] == {"app": "echo"}


def test_network_status_has_podmans_layout() -> None:
    ctr = pm.PodmanContainer(
        id="ab" * 32, name="web", status="running", pid=1, image_id="ff" * 32,
        image_name="localhost/x:1", runtime="runc", config_path=Path("/x"), upper_dir=None,
        networks={"podman": {"IPAddress": "10.88.0.6", "IPPrefixLen": 16,
                             "Gateway": "10.88.0.1", "MacAddress": "1e:60:19:b8:c2:0e"}})
    status = pm.network_status(ctr, {"podman": {"interface_name": "eth0"}})
    assert status == {"podman": {"interfaces": {"eth0": {
        "subnets": [{"ipnet": "10.88.0.6/16", "gateway": "10.88.0.1"}],
        "mac_address": "1e:60:19:b8:c2:0e"}}}}


def test_plan_target_round_trips_and_refuses_paths() -> None:
    p = PlannedPodman("ab" * 32, "web", "sha256:" + "ff" * 32)
    assert PlannedPodman.from_json(p.to_json()) == p
    assert plan_kind(p.to_json()) == "podman"
    assert plan_kind('{"kind":"runc","id":"x","rootfs":"."}') == "runc"
    assert plan_kind("not json") == "runc"
    for bad in ('{"kind":"podman","id":"../x","name":"web","image":"ff"}',
                '{"kind":"podman","id":"ab","name":"web","image":"ff","path":"/etc"}',
                '[1]', "x" * 5000):
        with pytest.raises(RemoteProtocolError):
            PlannedPodman.from_json(bad)


def test_restore_configuration_and_the_spec_annotation() -> None:
    assert pm.restore_conf() == "network-lock nftables\nleave-stopped\n"
    lazy = pm.restore_conf(lazy=True, work_dir=Path("/var/lib/ferryman/migrations/m"))
    assert "lazy-pages\n" in lazy
    assert 'work-dir "/var/lib/ferryman/migrations/m"' in lazy
    spec = json.loads(pm.with_criu_config(b'{"annotations":{"a":"b"}}', Path("/c.conf")))
    assert spec["annotations"] == {"a": "b", "org.criu.config": "/c.conf"}
    with pytest.raises(pm.PodmanError):
        pm.with_criu_config(b"[]", Path("/c.conf"))


def test_import_archive_carries_the_pre_dumps_as_parent_directories(tmp_path: Path) -> None:
    """After pre-copy the final set links to the last pre-dump's, which links to the one
    before: the archive has them as real directories (no links), every image, no logs."""
    for i, files in ((1, ("pagemap-1.img", "pages-1.img")), (2, ("pagemap-1.img",
                                                                 "pages-2.img"))):
        d = tmp_path / f"set-{i}"
        d.mkdir()
        for f in (*files, "dump.log"):
            (d / f).write_text(f"{i}{f}")
    (tmp_path / "set-2" / "parent").symlink_to("../set-1")
    (tmp_path / "parent").symlink_to("set-2")
    (tmp_path / pm.SPEC_DUMP).write_text("{}")
    (tmp_path / pm.CONFIG_DUMP).write_text("{}")
    for f in ("pagemap-1.img", "core-1.img", "restore.log"):
        (tmp_path / f).write_text(f)
    archive = tmp_path / "a.tar"
    pm.build_archive(tmp_path, archive, Path("/c.conf"))
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert not any(m.issym() or m.islnk() for m in members.values())
        assert members["checkpoint/parent"].isdir()
        assert members["checkpoint/parent/parent"].isdir()
        assert "checkpoint/parent/parent/parent" not in members
        pages = tar.extractfile("checkpoint/parent/parent/pages-1.img")
        assert pages is not None
        assert pages.read() == b"1pages-1.img"
    assert sorted(n for n in members if n.startswith("checkpoint/")) == [
        "checkpoint/core-1.img", "checkpoint/pagemap-1.img", "checkpoint/parent",
        "checkpoint/parent/pagemap-1.img", "checkpoint/parent/pages-2.img",
        "checkpoint/parent/parent", "checkpoint/parent/parent/pagemap-1.img",
        "checkpoint/parent/parent/pages-1.img"]


def test_podman_message_is_its_error_line() -> None:
    assert pm.podman_message("time=x level=warning msg=y\nError: no such container web\n") \
        == "no such container web"
    assert pm.podman_message("") == "no message"


def test_inet_addresses_of_criu_images_and_published_ports() -> None:
    assert nat._v4([0, 0, 0xFFFF0000, 0x1E00580A]) == "10.88.0.30"  # ::ffff:10.88.0.30
    assert nat._v4([0x1E00580A]) == "10.88.0.30"
    assert nat._v4([1, 2, 3, 4]) == ""  # IPv6, not mapped
    assert nat._v4("10.0.0.1") == ""
    ports = nat.published_ports({"newPortMappings": [
        {"container_port": 5000, "host_port": 8080, "protocol": "tcp", "range": 2},
        {"container_port": 53, "host_port": 53, "protocol": "udp"}]})
    assert ports == {5000: 8080, 5001: 8081}


def test_hold_drops_exactly_the_restored_connections() -> None:
    c = nat.Connection("10.88.0.30", 7000, "10.77.0.3", 40000)
    rules = nat.hold_ruleset("ferryman-pm-abc", [c])
    assert "hook forward" in rules
    assert ("ip saddr 10.88.0.30 tcp sport 7000 ip daddr 10.77.0.3 tcp dport 40000 drop"
            in rules)
    assert nat.conntrack_get_argv(c, "10.77.0.100", 8080)[-4:] == [
        "--sport", "40000", "--dport", "8080"]
