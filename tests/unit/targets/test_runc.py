"""The runc target's pure pieces: config.json and state parsing, argv, CRIU config, hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferryman.criu.client import PageServerAddress, TlsFiles
from ferryman.errors import RuncError
from ferryman.targets.runc import (
    BundleConfig,
    check_id,
    check_relative,
    checkpoint_argv,
    criu_conf,
    hold_script,
    parse_bundle_config,
    parse_state,
    restore_argv,
    rootfs_in_bundle,
    runc_message,
    sync_paths,
    sync_targets,
    with_rootfs,
)

ROOT = Path("/run/r")
IMG = Path("/var/lib/ferryman/migrations/m1")
LOG = IMG / "runc.log"
TLS = TlsFiles(Path("/pki/ca.pem"), Path("/pki/a.pem"), Path("/pki/a.key"))


def _config(**over: object) -> str:
    cfg: dict[str, object] = {
        "process": {"terminal": False, "args": ["sh"]},
        "root": {"path": "rootfs", "readonly": False},
        "linux": {"namespaces": [{"type": "pid"},
                                 {"type": "network", "path": "/var/run/netns/blue"}]},
    }
    cfg.update(over)
    return json.dumps(cfg)


def test_bundle_config_resolves_a_relative_rootfs_and_finds_the_netns() -> None:
    cfg = parse_bundle_config(_config(), Path("/b/c1"))
    assert cfg == BundleConfig(Path("/b/c1"), Path("/b/c1/rootfs"), "/var/run/netns/blue",
                               terminal=False)
    assert sync_paths(cfg) == (Path("/b/c1"),)
    assert sync_targets(cfg) == (("bundle", Path("/b/c1")),)
    assert rootfs_in_bundle(cfg) == "rootfs"


def test_rootfs_outside_the_bundle_is_synced_too() -> None:
    cfg = parse_bundle_config(_config(root={"path": "/srv/roots/c1"},
                                      process={"terminal": True}, linux={}), Path("/b/c1"))
    assert cfg.rootfs == Path("/srv/roots/c1")
    assert cfg.netns is None
    assert cfg.terminal
    assert sync_paths(cfg) == (Path("/b/c1"), Path("/srv/roots/c1"))
    assert sync_targets(cfg) == (("bundle", Path("/b/c1")), ("rootfs", Path("/srv/roots/c1")))
    assert rootfs_in_bundle(cfg) is None


def test_the_destination_points_its_config_at_its_own_rootfs() -> None:
    here = Path("/var/lib/ferryman/bundles/c1/bundle")
    assert with_rootfs(_config(), here, here / "rootfs") is None  # relative: unchanged
    moved = with_rootfs(_config(root={"path": "/srv/roots/c1", "readonly": True}), here,
                        Path("/var/lib/ferryman/bundles/c1/rootfs"))
    assert moved is not None
    assert json.loads(moved)["root"] == {"path": "/var/lib/ferryman/bundles/c1/rootfs",
                                         "readonly": True}


@pytest.mark.parametrize("path", ["", "/etc", "..", "a/../../etc", "a//b", "a/", "./a",
                                  "a\0b", "x" * 1025])
def test_a_rootfs_inside_a_bundle_is_a_plain_relative_path(path: str) -> None:
    with pytest.raises(RuncError):
        check_relative(path)


def test_relative_rootfs_paths_that_are_fine() -> None:
    for path in (".", "rootfs", "a/b/rootfs", "root.fs"):
        assert check_relative(path) == path


@pytest.mark.parametrize("text", ["[]", "{", json.dumps({"root": {}}),
                                  json.dumps({"root": {"path": ""}})])
def test_bad_config_json_is_a_runc_error(text: str) -> None:
    with pytest.raises(RuncError):
        parse_bundle_config(text, Path("/b"))


def test_state_parsing() -> None:
    st = parse_state(json.dumps({"ociVersion": "1.0.2-dev", "id": "c1", "pid": 4242,
                                 "status": "running", "bundle": "/b/c1",
                                 "rootfs": "/b/c1/rootfs", "created": "x", "owner": ""}))
    assert (st.id, st.pid, st.status, st.bundle) == ("c1", 4242, "running", Path("/b/c1"))
    with pytest.raises(RuncError, match="unexpected runc state output"):
        parse_state(json.dumps({"id": "c1", "pid": "x"}))


@pytest.mark.parametrize("bad", ["", "-x", "a b", "../c", "a/b", "x" * 200])
def test_container_ids_are_checked(bad: str) -> None:
    with pytest.raises(RuncError):
        check_id(bad)
    assert check_id("web-1.blue_2") == "web-1.blue_2"


def test_runc_message_takes_the_last_error_and_unescapes_it() -> None:
    stderr = ('time="2026-11-27T15:00:16Z" level=error msg="container still running"\n'
              'time="2026-11-27T15:00:16Z" level=error msg="criu failed: type NOTIFY errno 0'
              '\\nlog file: dump.log"\n')
    assert runc_message(stderr) == "criu failed: type NOTIFY errno 0 log file: dump.log"
    assert runc_message("plain text\nlast line\n") == "last line"
    assert runc_message("") == "no message"
    assert runc_message("", 1) == "no message (runc exit status 1)"  # its log was empty
    assert runc_message("", -9) == "no message (runc killed by signal 9)"
    assert runc_message("last line\n", -9) == "last line"


def test_checkpoint_argv_cold_and_lazy() -> None:
    cold = checkpoint_argv("runc", ROOT, "c1", images=IMG, log_file=LOG,
                           page_server=PageServerAddress("10.0.0.2", 4000),
                           tcp_established=True)
    assert cold == ["runc", "--root", "/run/r", "--log", str(LOG), "checkpoint",
                    "--image-path", str(IMG), "--work-path", str(IMG),
                    "--page-server", "10.0.0.2:4000", "--tcp-established", "--ext-unix-sk",
                    "c1"]
    lazy = checkpoint_argv("runc", ROOT, "c1", images=IMG, log_file=LOG,
                           page_server=PageServerAddress("10.0.0.1", 5000), lazy=True,
                           status_fd=7, parent="../pre")
    assert lazy[-9:] == ["--page-server", "10.0.0.1:5000", "--lazy-pages", "--status-fd",
                         "7", "--parent-path", "../pre", "--ext-unix-sk", "c1"]
    assert "--leave-running" not in cold + lazy  # one copy at a time
    # ... unless the caller froze its cgroup: then runc must not destroy the container
    # when a lazy dump ends (CRIU lets the tasks go into the cgroup it puts back frozen)
    kept = checkpoint_argv("runc", ROOT, "c1", images=IMG, log_file=LOG, lazy=True,
                           leave_running=True)
    assert kept[-4:] == ["--lazy-pages", "--leave-running", "--ext-unix-sk", "c1"]
    with pytest.raises(RuncError, match="only a lazy dump"):
        checkpoint_argv("runc", ROOT, "c1", images=IMG, log_file=LOG, leave_running=True)


def test_checkpoint_argv_pre_dump_streams_into_a_page_server_with_its_parent() -> None:
    first = checkpoint_argv("runc", ROOT, "c1", images=IMG / "pre-1", log_file=LOG,
                            page_server=PageServerAddress("10.0.0.2", 4000), pre_dump=True)
    assert first == ["runc", "--root", "/run/r", "--log", str(LOG), "checkpoint",
                     "--image-path", str(IMG / "pre-1"), "--work-path", str(IMG / "pre-1"),
                     "--pre-dump", "--page-server", "10.0.0.2:4000", "c1"]
    second = checkpoint_argv("runc", ROOT, "c1", images=IMG / "pre-2", log_file=LOG,
                             page_server=PageServerAddress("10.0.0.2", 4001), pre_dump=True,
                             parent="../pre-1")
    assert second[-6:] == ["--pre-dump", "--page-server", "10.0.0.2:4001", "--parent-path",
                           "../pre-1", "c1"]
    assert "--leave-running" not in first + second  # --pre-dump leaves it running itself
    assert "--ext-unix-sk" not in first + second  # a pre-dump copies memory only


def test_checkpoint_argv_pre_dump_is_never_lazy() -> None:
    with pytest.raises(RuncError, match="cannot be lazy"):
        checkpoint_argv("runc", ROOT, "c1", images=IMG, log_file=LOG, lazy=True,
                        pre_dump=True)


def test_restore_argv() -> None:
    argv = restore_argv("runc", ROOT, "c1", bundle=Path("/b/c1"), images=IMG, log_file=LOG,
                        pid_file=IMG / "pid", lazy=True, tcp_established=True)
    assert argv == ["runc", "--root", "/run/r", "--log", str(LOG), "restore", "--detach",
                    "--bundle", "/b/c1", "--image-path", str(IMG), "--work-path", str(IMG),
                    "--pid-file", str(IMG / "pid"), "--lazy-pages", "--tcp-established",
                    "--ext-unix-sk", "c1"]


def test_file_locks_and_a_ghost_limit_go_to_runc_and_criu_only_when_needed() -> None:
    locked = checkpoint_argv("runc", ROOT, "c1", images=IMG, log_file=LOG, file_locks=True)
    assert "--file-locks" in locked
    assert locked[-1] == "c1"
    assert "--file-locks" not in checkpoint_argv("runc", ROOT, "c1", images=IMG, log_file=LOG)
    back = restore_argv("runc", ROOT, "c1", bundle=Path("/b/c1"), images=IMG, log_file=LOG,
                        file_locks=True)
    assert "--file-locks" in back
    assert back[-1] == "c1"
    assert "ghost-limit 3145728" in criu_conf(ghost_limit=3 << 20).splitlines()
    assert "ghost-limit" not in criu_conf()


def test_criu_conf_keeps_memory_on_tls() -> None:
    text = criu_conf(tls=TLS, serves_pages=True, action_script=Path("/s/hold.sh"))
    assert text.splitlines() == [
        "network-lock nftables", "tls", 'tls-cacert "/pki/ca.pem"', 'tls-cert "/pki/a.pem"',
        'tls-key "/pki/a.key"', "tls-no-cn-verify", 'action-script "/s/hold.sh"']
    assert "tls-no-cn-verify" not in criu_conf(tls=TLS)
    assert criu_conf(leave_stopped=True).splitlines() == ["network-lock nftables",
                                                         "leave-stopped"]


@pytest.mark.parametrize("bad", [Path("relative/ca.pem"), Path('/with"quote'),
                                 Path("/back\\slash")])
def test_criu_conf_refuses_paths_it_cannot_quote(bad: Path) -> None:
    with pytest.raises(RuncError):
        criu_conf(tls=TlsFiles(bad, TLS.cert, TLS.key))


def test_hold_script_reports_and_waits_only_at_post_dump() -> None:
    text = hold_script(Path("/w/ev"), Path("/w/lock"), Path("/w/it's"))
    assert text.startswith("#!/bin/sh\n")
    assert 'pre-dump|post-dump) echo "$CRTOOLS_SCRIPT_ACTION" 1<>/w/ev' in text
    assert "*) exit 0 ;;" in text  # every other action passes at once
    # a lazy dump's page server starts only after a "go" (CRIU serves it whatever post-dump said)
    assert ("status-ready) [ \"$(cat '/w/it'\"'\"'s' 2>/dev/null)\" = go ] && exit 0; exit 1 ;;"
            in text)
    assert "flock -s /w/lock true\n" in text
    assert "[ \"$(cat '/w/it'\"'\"'s' 2>/dev/null)\" = go ] && exit 0\n" in text  # quoted
    assert text.endswith("exit 1\n")  # no "go", no dump
    assert "THAWED" not in text
    assert "freeze" not in text  # CRIU freezes the cgroup itself


def test_hold_script_can_wait_at_pre_dump_for_ferryman_to_freeze() -> None:
    text = hold_script(Path("/w/ev"), Path("/w/lock"), Path("/w/d"),
                       freeze_lock=Path("/w/freeze.lock"))
    lines = text.splitlines()
    wait = lines.index('[ "$CRTOOLS_SCRIPT_ACTION" = pre-dump ] && '
                       '{ flock -s /w/freeze.lock true; exit 0; }')
    assert wait < lines.index("flock -s /w/lock true")  # and post-dump waits as before


@pytest.mark.parametrize(("control", "value"), [
    (Path("/sys/fs/cgroup/freezer/c1/freezer.state"), "THAWED"),
    (Path("/sys/fs/cgroup/c1/cgroup.freeze"), "0")])
def test_without_go_a_cgroup_frozen_by_ferryman_is_thawed_after_criu(control: Path,
                                                                     value: str) -> None:
    text = hold_script(Path("/w/ev"), Path("/w/lock"), Path("/w/d"), control)
    helper = text.splitlines()[-2]
    assert helper.startswith("(while kill -0 $PPID")  # CRIU re-freezes it before it exits
    assert f"echo {value} > {control})" in helper
    assert helper.endswith("&")
