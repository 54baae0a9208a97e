"""The one builder of CRIU's RPC requests: dump, pre-dump, the dry run, restore, cpuinfo.

Every option ferryman sets on a CRIU request is set here, so a dump, a pre-dump and the
pre-flight's dry-run dump (:mod:`ferryman.criu.dryrun`) differ only in the arguments they
pass, never in code that drifted apart. :class:`~ferryman.criu.client.Criu` runs what these
functions build; nothing here runs CRIU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferryman.criu import rpc

_SKIP_LOCK: int = (rpc.Opts.DESCRIPTOR.fields_by_name["network_lock"]
                   .enum_type.values_by_name["SKIP"].number)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Absolute paths (a relative path crashes criu 4.1)."""

    cacert: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class PageServerAddress:
    address: str
    port: int


def _base(kind: int, images_fd: int, log_file: str, log_level: int) -> Any:
    req = rpc.Req()
    req.type = kind
    o = req.opts
    o.images_dir_fd = images_fd
    o.log_file = log_file
    o.log_level = log_level
    return req


def simple(kind: int) -> Any:
    """A request without options (VERSION)."""
    req = rpc.Req()
    req.type = kind
    return req


def feature_check() -> tuple[Any, list[str]]:
    """FEATURE_CHECK for what ferryman decides on, and the names asked: mem_track,
    lazy_pages, pidfd_store, and mem_track_uffd where pycriu knows it (our CRIU patch)."""
    req = simple(rpc.FEATURE_CHECK)
    names = ["mem_track", "lazy_pages", "pidfd_store"]
    if rpc.HAS_TRACK_MEM_UFFD:
        names.append("mem_track_uffd")
    for name in names:
        setattr(req.features, name, True)
    return req, names


def images_only(kind: int, images_fd: int, log_file: str, log_level: int) -> Any:
    """CPUINFO_DUMP, CPUINFO_CHECK: an images directory and a log, nothing else."""
    return _base(kind, images_fd, log_file, log_level)


def dump(pid: int, images_fd: int, *, log_file: str, log_level: int,
         page_server: PageServerAddress | None = None, tls: TlsFiles | None = None,
         notify: bool = False, lazy: bool = False, track_mem: bool = False,
         track_mem_uffd: bool = False, parent: str | None = None, leave_running: bool = False,
         tcp_established: bool = False, pre_dump: bool = False,
         freeze_cgroup: str | None = None, network_lock: bool = True,
         page_server_fd: int | None = None, shell_job: bool = False,
         file_locks: bool = False, ghost_limit: int | None = None) -> Any:
    """DUMP (or PRE_DUMP) of the tree at ``pid``.

    ``file_locks``: the tree holds file locks (host/filelocks.py), which CRIU dumps only when
    told (``--file-locks``). ``ghost_limit``: the largest open-but-deleted file CRIU copies
    into the images (``--ghost-limit``; its default is 1 MiB).

    ``shell_job``: the tree's session (or process group) leader is not in it, as for
    anything started from a shell without ``setsid``: CRIU's ``--shell-job``, without which
    it refuses such a tree (the restore then gives it the restoring criu's session).

    ``page_server_fd``: a connected socket (inherited by criu swrk) to write the page-server
    protocol into instead of connecting (ferryman's page relay; CRIU then uses no TLS on it).

    ``network_lock`` False skips CRIU's lock (the dry run: nothing leaves the node, and
    nftables costs ~15 ms of freeze); otherwise the lock is nftables (the RPC default is
    iptables, absent here).
    """
    req = _base(rpc.PRE_DUMP if pre_dump else rpc.DUMP, images_fd, log_file, log_level)
    o = req.opts
    o.pid = pid
    o.notify_scripts = notify
    o.network_lock = rpc.NFTABLES if network_lock else _SKIP_LOCK
    o.leave_running = leave_running
    o.tcp_established = tcp_established
    o.lazy_pages = lazy
    if shell_job:
        o.shell_job = True
    if file_locks:
        o.file_locks = True
    # A datagram socket connected to a name outside the tree (a daemon's /dev/log): CRIU
    # refuses it without --ext-unix-sk, and with it the restore connects to that name again
    # (the pre-flight checks it is bound there: host/unix_peers.py). Streams stay refused.
    o.ext_unix_sk = True
    if ghost_limit is not None:
        o.ghost_limit = ghost_limit
    if lazy and not leave_running:
        # Stopped, never killed: a lazy dump's end says only that the lazy-pages client
        # closed the session, which it also does when the restore it served failed
        # (criu/uffd.c disconnects in order whatever happened), so CRIU's "success" there
        # cannot decide the source's fate (docs/ARCHITECTURE.md, section 10).
        o.leave_stopped = True
    o.track_mem = track_mem or track_mem_uffd
    if track_mem_uffd:
        o.track_mem_uffd = True  # scripts/criu-patches/uffd-track-mem.patch
    if parent:
        o.parent_img = parent
    if freeze_cgroup:
        o.freeze_cgroup = freeze_cgroup
    if page_server is not None:
        o.ps.address = page_server.address
        o.ps.port = page_server.port
    if page_server_fd is not None:
        o.ps.fd = page_server_fd
    if tls is not None:
        _set_tls(o, tls)
        # In lazy mode the dump *serves* pages, and CRIU's server side checks the
        # client's certificate against its own --address: keep only the CA check.
        o.tls_no_cn_verify = lazy
    return req


def restore(images_fd: int, *, log_file: str, log_level: int, leave_stopped: bool = True,
            lazy: bool = False, tcp_established: bool = False, shell_job: bool = False,
            file_locks: bool = False) -> Any:
    """RESTORE of the tree in the images directory (``shell_job``: dumped as one;
    ``file_locks``: its images hold file locks, which CRIU takes again only when told)."""
    req = _base(rpc.RESTORE, images_fd, log_file, log_level)
    o = req.opts
    if shell_job:
        o.shell_job = True
    if file_locks:
        o.file_locks = True
    o.ext_unix_sk = True  # see dump()
    o.leave_stopped = leave_stopped
    o.lazy_pages = lazy
    o.tcp_established = tcp_established
    o.network_lock = rpc.NFTABLES
    return req


def _set_tls(o: Any, tls: TlsFiles) -> None:
    o.tls = True
    o.tls_cacert = str(tls.cacert)
    o.tls_cert = str(tls.cert)
    o.tls_key = str(tls.key)
