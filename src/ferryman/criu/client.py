"""High-level CRIU operations over swrk: version, features, cpuinfo, dump, restore."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferryman.criu import rpc
from ferryman.criu.logs import first_error
from ferryman.criu.swrk import NotifyHandler, SwrkSession
from ferryman.errors import CriuError, CriuMissing

log = logging.getLogger(__name__)

MIN_VERSION = (4, 2)


@dataclass(frozen=True, slots=True)
class CriuVersion:
    major: int
    minor: int
    sublevel: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.sublevel}"


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


@contextmanager
def _dir_fd(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class CriuFacts:
    """What does not change while a node runs: version, kernel features, CPU description."""

    version: CriuVersion
    features: dict[str, bool]
    cpuinfo: bytes


class Criu:
    """CRIU, found at ``binary``. Each call runs its own ``criu swrk``."""

    def __init__(self, binary: str = "criu", log_level: int = 2,
                 env: Mapping[str, str] | None = None) -> None:
        """``env``: criu's whole environment (None: ours), e.g. with a page-rate cap
        (:func:`ferryman.criu.pacing.criu_env`)."""
        # Level 2 (errors and warnings): CRIU's debug logging costs time while the workload
        # is frozen; errors, which we quote to the user, are logged at every level.
        self.binary = binary
        self.log_level = log_level
        self.env = env
        self._facts: CriuFacts | None = None

    async def facts(self, scratch_parent: Path) -> CriuFacts:
        """Version, features and cpuinfo, asked once (three criu runs) and then remembered.

        ``cpuinfo.img`` is written to a temporary directory under ``scratch_parent``.
        """
        if self._facts is None:
            version = await self.check_version()
            features = await self.features()
            with tempfile.TemporaryDirectory(dir=scratch_parent, prefix="cpuinfo-") as tmp:
                cpuinfo = await self.cpuinfo_dump(Path(tmp))
            self._facts = CriuFacts(version, features, cpuinfo)
        return self._facts

    async def _call(self, req: Any, action: str, *, pass_fds: tuple[int, ...] = (),
                    on_notify: NotifyHandler | None = None, log_path: Path | None = None) -> Any:
        session = await SwrkSession.start(self.binary, pass_fds=pass_fds, env=self.env)
        try:
            resp = await session.call(req, action, on_notify)
        except asyncio.CancelledError:
            await session.kill()
            raise
        except CriuError as exc:
            if log_path is not None and exc.log_path is None:
                reason = first_error(log_path) or exc.reason
                raise CriuError(action, log_path=str(log_path), reason=reason) from exc
            raise
        finally:
            await session.close()
        if not resp.success:
            reason = (first_error(log_path) if log_path else None) or resp.cr_errmsg or None
            errno = resp.cr_errno if resp.HasField("cr_errno") else None
            if reason is None and errno:
                reason = os.strerror(errno)
            raise CriuError(action, errno=errno, reason=reason,
                            log_path=str(log_path) if log_path else None)
        return resp

    async def version(self) -> CriuVersion:
        req = rpc.Req()
        req.type = rpc.VERSION
        resp = await self._call(req, "version")
        v = resp.version
        return CriuVersion(v.major_number, v.minor_number, v.sublevel if v.HasField("sublevel")
                           else 0)

    async def check_version(self) -> CriuVersion:
        v = await self.version()
        if (v.major, v.minor) < MIN_VERSION:
            raise CriuMissing(f"criu {v} is too old (need >= {MIN_VERSION[0]}.{MIN_VERSION[1]})")
        return v

    async def features(self) -> dict[str, bool]:
        """Kernel/CRIU features: mem_track (pre-copy), lazy_pages (post-copy), pidfd_store."""
        req = rpc.Req()
        req.type = rpc.FEATURE_CHECK
        req.features.mem_track = True
        req.features.lazy_pages = True
        req.features.pidfd_store = True
        resp = await self._call(req, "feature-check")
        f = resp.features
        return {name: bool(getattr(f, name)) for name in ("mem_track", "lazy_pages", "pidfd_store")}

    def _opts(self, req: Any, dir_fd: int, log_file: str) -> Any:
        o = req.opts
        o.images_dir_fd = dir_fd
        o.log_file = log_file
        o.log_level = self.log_level
        return o

    async def cpuinfo_dump(self, images_dir: Path) -> bytes:
        """This CPU's description as CRIU sees it (the ``cpuinfo.img`` bytes)."""
        with _dir_fd(images_dir) as fd:
            req = rpc.Req()
            req.type = rpc.CPUINFO_DUMP
            self._opts(req, fd, "cpuinfo-dump.log")
            await self._call(req, "cpuinfo-dump", pass_fds=(fd,),
                             log_path=images_dir / "cpuinfo-dump.log")
        return (images_dir / "cpuinfo.img").read_bytes()

    async def cpuinfo_check(self, images_dir: Path) -> str | None:
        """None when a dump described by ``images_dir/cpuinfo.img`` can run here, else why not."""
        with _dir_fd(images_dir) as fd:
            req = rpc.Req()
            req.type = rpc.CPUINFO_CHECK
            self._opts(req, fd, "cpuinfo-check.log")
            try:
                await self._call(req, "cpuinfo-check", pass_fds=(fd,),
                                 log_path=images_dir / "cpuinfo-check.log")
            except CriuError as exc:
                return exc.reason or "CPU features differ"
        return None

    async def dump(
        self,
        pid: int,
        images_dir: Path,
        *,
        page_server: PageServerAddress | None = None,
        tls: TlsFiles | None = None,
        on_notify: NotifyHandler | None = None,
        lazy: bool = False,
        track_mem: bool = False,
        parent: str | None = None,
        leave_running: bool = False,
        tcp_established: bool = False,
        pre_dump: bool = False,
        freeze_cgroup: str | None = None,
        log_file: str = "dump.log",
    ) -> None:
        """Dump (or pre-dump) the tree at ``pid``; notifications go to ``on_notify``.

        A lazy dump leaves the tree stopped, never killed: its end says only that the
        lazy-pages client closed the session, which it also does when the restore it serves
        failed (criu/uffd.c disconnects in order whatever happened), so CRIU's "success"
        there cannot decide the source's fate; the caller kills or continues the tree."""
        with _dir_fd(images_dir) as fd:
            req = rpc.Req()
            req.type = rpc.PRE_DUMP if pre_dump else rpc.DUMP
            o = self._opts(req, fd, log_file)
            o.pid = pid
            o.notify_scripts = on_notify is not None
            o.network_lock = rpc.NFTABLES
            o.leave_running = leave_running
            o.tcp_established = tcp_established
            o.lazy_pages = lazy
            if lazy and not leave_running:
                o.leave_stopped = True
            o.track_mem = track_mem
            if parent:
                o.parent_img = parent
            if freeze_cgroup:
                o.freeze_cgroup = freeze_cgroup
            if page_server is not None:
                o.ps.address = page_server.address
                o.ps.port = page_server.port
            if tls is not None:
                _set_tls(o, tls)
                # In lazy mode the dump *serves* pages, and CRIU's server side checks the
                # client's certificate against its own --address: keep only the CA check.
                o.tls_no_cn_verify = lazy
            await self._call(req, "pre-dump" if pre_dump else "dump", pass_fds=(fd,),
                             on_notify=on_notify, log_path=images_dir / log_file)

    async def restore(
        self,
        images_dir: Path,
        *,
        leave_stopped: bool = True,
        lazy: bool = False,
        tcp_established: bool = False,
        log_file: str = "restore.log",
    ) -> int:
        """Restore the tree in ``images_dir``; returns the root's PID (as this host sees it)."""
        with _dir_fd(images_dir) as fd:
            req = rpc.Req()
            req.type = rpc.RESTORE
            o = self._opts(req, fd, log_file)
            o.leave_stopped = leave_stopped
            o.lazy_pages = lazy
            o.tcp_established = tcp_established
            o.network_lock = rpc.NFTABLES
            resp = await self._call(req, "restore", pass_fds=(fd,),
                                    log_path=images_dir / log_file)
        return int(resp.restore.pid)


def _set_tls(o: Any, tls: TlsFiles) -> None:
    o.tls = True
    o.tls_cacert = str(tls.cacert)
    o.tls_cert = str(tls.cert)
    o.tls_key = str(tls.key)
