"""High-level CRIU operations over swrk: version, features, cpuinfo, dump, restore."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferryman.criu import factcache, probe, requests, rpc
from ferryman.criu.filelocks import dumped_file_locks
from ferryman.criu.logs import first_error
from ferryman.criu.requests import PageServerAddress, TlsFiles
from ferryman.criu.shelljob import dumped_as_shell_job, shell_job
from ferryman.criu.swrk import NotifyHandler, SwrkSession
from ferryman.errors import CriuError, CriuMissing
from ferryman.host import procfs
from ferryman.host.filelocks import tree_holds_locks
from ferryman.host.ghosts import DEFAULT_LIMIT as DEFAULT_GHOST_LIMIT
from ferryman.host.ghosts import ghost_limit, largest_ghost

# TlsFiles and PageServerAddress live with the request builder; importable from here too.
__all__ = ["Criu", "CriuFacts", "CriuVersion", "PageServerAddress", "TlsFiles"]

log = logging.getLogger(__name__)

MIN_VERSION = (4, 2)
# a dry run's criu skips the pages nobody reads (scripts/criu-patches/dry-run-no-lazy-pages.patch)
DRY_RUN_ENV: Mapping[str, str] = {"FERRYMAN_DRY_RUN": "1"}
# The page relay's frames on a --ps-socket: read by a lazy-pages daemon, written by a lazy
# dump serving its pages (scripts/criu-patches/relay-frames-lazy.patch)
RELAY_FRAMES_ENV = "FERRYMAN_RELAY_FRAMES"


@dataclass(frozen=True, slots=True)
class CriuVersion:
    major: int
    minor: int
    sublevel: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.sublevel}"


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
        self._probes: dict[str, bool] | None = None
        self._probed_at = 0.0  # time.monotonic() of the probes
        self._cpu_ok: set[bytes] = set()  # sha256 of cpuinfo.img bytes CRIU accepted

    async def facts(self, scratch_parent: Path) -> CriuFacts:
        """Version, features and cpuinfo, asked once (three criu runs, concurrently, with the
        ``check --feature`` probes) and then remembered: in this process, and in
        ``scratch_parent/criu-facts.json`` for the next one while the binary, the boot and
        the kernel are the same (:mod:`ferryman.criu.factcache`).

        ``cpuinfo.img`` is written to a temporary directory under ``scratch_parent``.
        """
        if self._facts is None:
            _, asked = requests.feature_check()
            key = factcache.host_key(self.binary, [*asked, *probe.PROBES])
            cached = None if key is None else factcache.load(scratch_parent, key)
            if cached is not None:
                (major, minor, sub), features, cpuinfo, probes = cached
                version = CriuVersion(major, minor, sub)
                if (major, minor) < MIN_VERSION:  # as check_version says it
                    version = await self.check_version()
                self._facts = CriuFacts(version, features, cpuinfo)
                self._probes, self._probed_at = probes, time.monotonic()
                log.debug("criu facts reused from %s", scratch_parent / factcache.FILE_NAME)
                return self._facts
            with tempfile.TemporaryDirectory(dir=scratch_parent, prefix="cpuinfo-") as tmp:
                version, features, cpuinfo, probes = await asyncio.gather(
                    self.check_version(), self.features(), self.cpuinfo_dump(Path(tmp)),
                    probe.probe_features(self.binary))
            self._facts = CriuFacts(version, features, cpuinfo)
            self._probes, self._probed_at = probes, time.monotonic()
            if key is not None:
                factcache.save(scratch_parent, factcache.encode(
                    key, (version.major, version.minor, version.sublevel), features, cpuinfo,
                    probes, now=time.time()))
        return self._facts

    async def probes(self) -> dict[str, bool]:
        """The ``criu check --feature`` probes (:mod:`ferryman.criu.probe`): those asked with
        :meth:`facts` (and cached with them), else asked now."""
        if self._probes is None or time.monotonic() - self._probed_at > factcache.MAX_AGE_S:
            self._probes = await probe.probe_features(self.binary)
            self._probed_at = time.monotonic()
        return dict(self._probes)

    def _env_with(self, extra: Mapping[str, str]) -> dict[str, str]:
        """criu's environment (``self.env``, else ours) with ``extra`` added."""
        return {**(os.environ if self.env is None else self.env), **extra}

    async def _call(self, req: Any, action: str, *, pass_fds: tuple[int, ...] = (),
                    on_notify: NotifyHandler | None = None, log_path: Path | None = None,
                    new_session: bool = False,
                    on_started: Callable[[int], None] | None = None,
                    env: Mapping[str, str] | None = None) -> Any:
        """One swrk call; ``env``: criu's environment for it (None: ``self.env``)."""
        session = await SwrkSession.start(self.binary, pass_fds=pass_fds,
                                          env=self.env if env is None else env,
                                          new_session=new_session)
        if on_started is not None:
            on_started(session.pid)
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
        resp = await self._call(requests.simple(rpc.VERSION), "version")
        v = resp.version
        return CriuVersion(v.major_number, v.minor_number, v.sublevel if v.HasField("sublevel")
                           else 0)

    async def check_version(self) -> CriuVersion:
        v = await self.version()
        if (v.major, v.minor) < MIN_VERSION:
            raise CriuMissing(f"criu {v} is too old (need >= {MIN_VERSION[0]}.{MIN_VERSION[1]})")
        return v

    async def features(self) -> dict[str, bool]:
        """Kernel/CRIU features: mem_track (pre-copy with soft-dirty), mem_track_uffd
        (pre-copy with userfaultfd write-protect: our CRIU patch, issue 15), lazy_pages
        (post-copy), pidfd_store."""
        req, names = requests.feature_check()
        resp = await self._call(req, "feature-check")
        f = resp.features
        found = {name: bool(getattr(f, name)) for name in names}
        found.setdefault("mem_track_uffd", False)
        return found

    async def cpuinfo_dump(self, images_dir: Path) -> bytes:
        """This CPU's description as CRIU sees it (the ``cpuinfo.img`` bytes)."""
        with _dir_fd(images_dir) as fd:
            req = requests.images_only(rpc.CPUINFO_DUMP, fd, "cpuinfo-dump.log", self.log_level)
            await self._call(req, "cpuinfo-dump", pass_fds=(fd,),
                             log_path=images_dir / "cpuinfo-dump.log")
        return (images_dir / "cpuinfo.img").read_bytes()

    async def cpuinfo_check(self, images_dir: Path) -> str | None:
        """None when a dump described by ``images_dir/cpuinfo.img`` can run here, else why not.

        A compatible answer is remembered for those exact bytes (the source's CPU), so the
        destination's pre-flight and its Plan ask CRIU once; a refusal is asked again. The
        bytes this node's own CRIU wrote (its facts, asked at the agent's start) describe this
        very CPU: compatible without asking (a criu run, ~10 ms of the first pre-flight
        between two nodes of one CPU model, as most clusters are)."""
        image = (images_dir / "cpuinfo.img").read_bytes()
        if self._facts is not None and image == self._facts.cpuinfo:
            return None
        digest = hashlib.sha256(image).digest()
        if digest in self._cpu_ok:
            return None
        with _dir_fd(images_dir) as fd:
            req = requests.images_only(rpc.CPUINFO_CHECK, fd, "cpuinfo-check.log",
                                       self.log_level)
            try:
                await self._call(req, "cpuinfo-check", pass_fds=(fd,),
                                 log_path=images_dir / "cpuinfo-check.log")
            except CriuError as exc:
                return exc.reason or "CPU features differ"
        self._cpu_ok.add(digest)
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
        track_mem_uffd: bool = False,
        parent: str | None = None,
        leave_running: bool = False,
        tcp_established: bool = False,
        pre_dump: bool = False,
        freeze_cgroup: str | None = None,
        log_file: str = "dump.log",
        network_lock: bool = True,
        action: str | None = None,
        page_server_fd: int | None = None,
        dry_run: bool = False,
        relay_frames: bool = False,
    ) -> None:
        """Dump (or pre-dump) the tree at ``pid``; notifications go to ``on_notify``.

        A lazy dump leaves the tree stopped, never killed (criu/requests.py:dump says why);
        the caller kills or continues it. ``track_mem_uffd``: dirty pages are the ones
        userfaultfd write-protect saw written (the agent's
        :class:`ferryman.host.wptrack.WriteTracker` holds the descriptors), not the
        soft-dirty ones; implies ``track_mem``. The request is
        :func:`ferryman.criu.requests.dump`'s; ``action`` names the call in errors (default
        ``dump`` or ``pre-dump``). ``dry_run`` (a lazy dump the caller declines,
        criu/dryrun.py): criu gets :data:`DRY_RUN_ENV`, and our build then neither scans
        nor takes the pages lazy-pages would serve (dry-run-no-lazy-pages.patch; another
        criu takes them as ever).
        """
        tree = [] if pre_dump else procfs.tree(pid)  # a pre-dump copies no files
        ghosts = largest_ghost(tree)
        locks = bool(tree) and tree_holds_locks(tree)
        if locks or ghosts > DEFAULT_GHOST_LIMIT:
            log.info("%s of PID %d: %s", action or "dump", pid, ", ".join(
                (["file locks (CRIU's --file-locks)"] if locks else [])
                + ([f"ghost files up to {ghosts} bytes (--ghost-limit)"]
                   if ghosts > DEFAULT_GHOST_LIMIT else [])))
        with _dir_fd(images_dir) as fd:
            req = requests.dump(pid, fd, log_file=log_file, log_level=self.log_level,
                                shell_job=shell_job(pid),
                                file_locks=locks,
                                ghost_limit=ghost_limit(ghosts),
                                page_server=page_server, tls=tls,
                                notify=on_notify is not None, lazy=lazy, track_mem=track_mem,
                                track_mem_uffd=track_mem_uffd,
                                parent=parent, leave_running=leave_running,
                                tcp_established=tcp_established, pre_dump=pre_dump,
                                freeze_cgroup=freeze_cgroup, network_lock=network_lock,
                                page_server_fd=page_server_fd)
            fds = (fd,) if page_server_fd is None else (fd, page_server_fd)
            await self._call(req, action or ("pre-dump" if pre_dump else "dump"),
                             pass_fds=fds, on_notify=on_notify,
                             log_path=images_dir / log_file,
                             env=self._dump_env(dry_run, relay_frames))

    def _dump_env(self, dry_run: bool, relay_frames: bool) -> dict[str, str] | None:
        """A dump's environment: our own unless it is a dry run (DRY_RUN_ENV) or writes
        the page relay's frames (``relay_frames``: a lazy dump serving its pages on
        ``page_server_fd``, which compresses them itself; relay-frames-lazy.patch)."""
        extra = {**(DRY_RUN_ENV if dry_run else {}),
                 **({RELAY_FRAMES_ENV: "1"} if relay_frames else {})}
        return self._env_with(extra) if extra else None

    async def restore(
        self,
        images_dir: Path,
        *,
        leave_stopped: bool = True,
        lazy: bool = False,
        tcp_established: bool = False,
        log_file: str = "restore.log",
        on_started: Callable[[int], None] | None = None,
    ) -> int:
        """Restore the tree in ``images_dir``; returns the root's PID (as this host sees it).

        A tree dumped as a shell job (:func:`shell_job`) joins the restoring criu's session
        and process group: that criu runs in a session of its own, never the agent's (whose
        terminal's signals, or whose group's, must not reach the workload)."""
        job = dumped_as_shell_job(images_dir)
        locks = dumped_file_locks(images_dir)
        if locks:
            log.info("restoring %s with its file locks (CRIU's --file-locks)", images_dir)
        with _dir_fd(images_dir) as fd:
            req = requests.restore(fd, log_file=log_file, log_level=self.log_level,
                                   leave_stopped=leave_stopped, lazy=lazy,
                                   tcp_established=tcp_established, shell_job=job,
                                   file_locks=locks)
            resp = await self._call(req, "restore", pass_fds=(fd,),
                                    log_path=images_dir / log_file, new_session=job,
                                    on_started=on_started)
        return int(resp.restore.pid)

