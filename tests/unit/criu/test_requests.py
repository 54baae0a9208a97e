"""The one CRIU request builder: what each kind of dump asks CRIU for (no CRIU is run)."""

from __future__ import annotations

from pathlib import Path

from ferryman.criu import requests, rpc
from ferryman.criu.requests import PageServerAddress, TlsFiles

TLS = TlsFiles(Path("/pki/ca.crt"), Path("/pki/n.crt"), Path("/pki/n.key"))
PS = PageServerAddress("10.0.0.2", 4711)
SKIP = rpc.Opts.DESCRIPTOR.fields_by_name["network_lock"].enum_type.values_by_name["SKIP"].number


def test_cold_dump_streams_pages_over_tls_under_an_nftables_lock() -> None:
    req = requests.dump(42, 7, log_file="dump.log", log_level=2, page_server=PS, tls=TLS,
                        notify=True, freeze_cgroup="/sys/fs/cgroup/w")
    o = req.opts
    assert req.type == rpc.DUMP
    assert (o.pid, o.images_dir_fd, o.log_file, o.log_level) == (42, 7, "dump.log", 2)
    assert (o.ps.address, o.ps.port) == ("10.0.0.2", 4711)
    assert (o.tls, o.tls_cacert, o.tls_no_cn_verify) == (True, "/pki/ca.crt", False)
    assert o.network_lock == rpc.NFTABLES
    assert o.notify_scripts
    assert o.freeze_cgroup == "/sys/fs/cgroup/w"
    assert not (o.lazy_pages)
    assert not (o.leave_running)
    assert not (o.track_mem)
    assert not (o.HasField("parent_img"))


def test_lazy_dump_serves_pages_and_checks_only_the_ca() -> None:
    o = requests.dump(42, 7, log_file="dump.log", log_level=2, page_server=PS, tls=TLS,
                      lazy=True, track_mem=True, parent="pre-3").opts
    assert o.lazy_pages
    assert o.tls_no_cn_verify
    assert o.track_mem
    assert o.parent_img == "pre-3"


def test_pre_dump_is_its_own_request_type() -> None:
    req = requests.dump(42, 7, log_file="pre-dump.log", log_level=2, pre_dump=True,
                        track_mem=True, parent="../pre-1")
    assert req.type == rpc.PRE_DUMP
    assert req.opts.parent_img == "../pre-1"


def test_dry_run_dump_is_a_lazy_dump_that_leaves_the_tree_running_without_lock() -> None:
    o = requests.dump(42, 7, log_file="dry-run.log", log_level=2, notify=True, lazy=True,
                      leave_running=True, network_lock=False).opts
    assert o.lazy_pages
    assert o.leave_running
    assert o.notify_scripts
    assert o.network_lock == SKIP
    assert not o.HasField("ps")
    assert not o.tls


def test_restore_leaves_the_tree_stopped_under_an_nftables_lock() -> None:
    req = requests.restore(9, log_file="restore.log", log_level=2, lazy=True)
    assert req.type == rpc.RESTORE
    o = req.opts
    assert o.leave_stopped
    assert o.lazy_pages
    assert o.network_lock == rpc.NFTABLES


def test_a_shell_job_is_dumped_and_restored_as_one_and_nothing_else_is() -> None:
    assert requests.dump(42, 9, log_file="d.log", log_level=2, shell_job=True).opts.shell_job
    assert not requests.dump(42, 9, log_file="d.log", log_level=2).opts.HasField("shell_job")
    assert requests.restore(9, log_file="r.log", log_level=2, shell_job=True).opts.shell_job
    assert not requests.restore(9, log_file="r.log", log_level=2).opts.HasField("shell_job")


def test_file_locks_and_a_ghost_limit_are_asked_for_only_when_given() -> None:
    d = requests.dump(42, 9, log_file="d.log", log_level=2, file_locks=True,
                      ghost_limit=5 << 20)
    assert d.opts.file_locks
    assert d.opts.ghost_limit == 5 << 20
    plain = requests.dump(42, 9, log_file="d.log", log_level=2)
    assert not plain.opts.HasField("file_locks")
    assert not plain.opts.HasField("ghost_limit")  # CRIU's own 1 MiB
    assert requests.restore(9, log_file="r.log", log_level=2, file_locks=True).opts.file_locks
    assert not requests.restore(9, log_file="r.log", log_level=2).opts.HasField("file_locks")


def test_dumps_and_restores_allow_datagram_peers_outside_the_tree() -> None:
    """CRIU's --ext-unix-sk: a daemon's /dev/log socket is dumped and connected again."""
    assert requests.dump(1, 3, log_file="d.log", log_level=2).opts.ext_unix_sk
    assert requests.restore(3, log_file="r.log", log_level=2).opts.ext_unix_sk
