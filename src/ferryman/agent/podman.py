"""Podman containers in the SOURCE and DESTINATION roles, as hooks beside the runc ones.

SOURCE (:class:`PodmanSource`): Podman names the container and says where it lives; runc
(Podman's runtime, on Podman's runc state) dumps it through ferryman's memory path
(:class:`PodmanDumper`, a :class:`~ferryman.targets.runc_checkpoint.RuncDumper`); the files
of Podman's export (config, spec, network status, rootfs changes) go with the CRIU images.
After the commit the source's stopped record is removed (``podman rm``): the container is the
destination's now, and a second record of it could be started again here.

DESTINATION (:class:`PodmanDestination`): refuses unless Podman has the image and neither the
name nor the id; packs the arrived files into Podman's import layout and runs
``podman container restore --import``, so Podman creates the record, storage and network and
restores it (stopped until the commit, via the CRIU configuration its spec names). Rollback:
``podman rm --force``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ferryman.agent.container import (
    RuncTarget,
    SourceContainer,
)
from ferryman.criu.client import PageServerAddress, TlsFiles
from ferryman.criu.swrk import NotifyHandler
from ferryman.errors import FerrymanError, PodmanError, RemoteProtocolError, RuncError
from ferryman.pki import NodeCredentials
from ferryman.targets import podman as pm
from ferryman.targets.podman import PodmanTarget
from ferryman.targets.runc import ID_RE, Runc
from ferryman.targets.runc_checkpoint import RuncDumper

if TYPE_CHECKING:
    from ferryman.agent.role import SourceRole

log = logging.getLogger(__name__)
KIND = "podman"
MAX_TARGET_CHARS = 4096


@dataclass(frozen=True, slots=True)
class PlannedPodman:
    """``Plan.target`` for a Podman container: its id, name and image (no paths)."""

    id: str
    name: str
    image: str  # the image id: the destination must have that very image

    def to_json(self) -> str:
        return json.dumps({"kind": KIND, "id": self.id, "name": self.name,
                           "image": self.image}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PlannedPodman:
        if len(text) > MAX_TARGET_CHARS:
            raise RemoteProtocolError(f"Plan.target: more than {MAX_TARGET_CHARS} characters")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise RemoteProtocolError(f"Plan.target is not JSON: {exc}") from exc
        if not isinstance(data, dict) or set(data) != {"kind", "id", "name", "image"} or \
                not all(isinstance(data[k], str) for k in ("id", "name", "image")):
            raise RemoteProtocolError("Plan.target: a Podman container needs its id, name "
                                      "and image, and nothing else")
        cid, name, image = data["id"], data["name"], data["image"]
        if not ID_RE.fullmatch(cid) or not ID_RE.fullmatch(name) or \
                not ID_RE.fullmatch(image.removeprefix("sha256:")):
            raise RemoteProtocolError("Plan.target: not a valid container id, name or image")
        return cls(cid, name, image)


def plan_kind(text: str) -> str:
    """The ``kind`` a Plan's target names (``runc`` when unreadable: its parser says why)."""
    try:
        data = json.loads(text) if len(text) <= MAX_TARGET_CHARS else None
    except (ValueError, RecursionError):
        return "runc"
    return str(data.get("kind")) if isinstance(data, dict) else "runc"


class PodmanDumper(RuncDumper):
    """runc's checkpoint, plus Podman's files: the export files before the freeze, the
    rootfs changes while frozen (shipped with the images at ``post-dump``)."""

    def __init__(self, box: PodmanSource, runc: Runc, ctl_dir: Path, workdir: Path, *,
                 on_frozen: Callable[[], None] | None, timings: dict[str, float],
                 env: Mapping[str, str] | None = None) -> None:
        super().__init__(runc, box.ctr.id, ctl_dir, on_frozen, timings, env=env)
        self.box = box
        self.workdir = workdir

    async def dump(self, pid: int, images_dir: Path, *,
                   page_server: PageServerAddress | None = None, tls: TlsFiles | None = None,
                   on_notify: NotifyHandler | None = None, lazy: bool = False,
                   track_mem: bool = False, track_mem_uffd: bool = False,
                   parent: str | None = None,
                   tcp_established: bool = False, pre_dump: bool = False,
                   freeze_cgroup: str | None = None, log_file: str = "dump.log",
                   network_lock: bool = True) -> None:
        handler = on_notify

        async def with_files(script: str, p: int) -> bool:
            if script == "pre-dump":  # before the freeze: config, spec, network status
                t0 = time.monotonic()
                size = await asyncio.to_thread(pm.write_export, self.workdir, self.box.ctr,
                                               self.box.info)
                self.box.timings["podman_export_ms"] = (time.monotonic() - t0) * 1000
                self.box.timings["podman_export_bytes"] = float(size)
            elif script == "post-dump":  # the rootfs changes go with the images
                await self.box.rootfs_done()
            return True if handler is None else await handler(script, p)

        await super().dump(pid, images_dir, page_server=page_server, tls=tls,
                           on_notify=with_files if not pre_dump else on_notify, lazy=lazy,
                           track_mem=track_mem, track_mem_uffd=track_mem_uffd,
                           parent=parent, tcp_established=tcp_established, pre_dump=pre_dump,
                           freeze_cgroup=freeze_cgroup, log_file=log_file,
                           network_lock=network_lock)


class PodmanSource(SourceContainer):
    """A running Podman container on this node, about to move."""

    kind = "podman"
    presyncs = False  # nothing to rsync: Podman makes the rootfs from the image

    def __init__(self, target: PodmanTarget, podman: pm.Podman, info: pm.PodmanInfo, *,
                 ctr: pm.PodmanContainer, runc_target: RuncTarget,
                 timings: dict[str, float]) -> None:
        self.podman = podman
        self.info = info
        self.ctr = ctr
        self.podman_target = target
        self.timings = timings
        self._diff: asyncio.Future[None] | None = None
        self.workdir: Path | None = None
        self._runc_target = runc_target

    @classmethod
    async def open_podman(cls, target: PodmanTarget, timings: dict[str, float]
                          ) -> PodmanSource:
        podman = pm.Podman(target.podman)
        info = await podman.info()
        ctr = await podman.inspect(target.name)
        if ctr is None:
            raise PodmanError("inspect", target.name, f"Podman has no container "
                              f"{target.name!r} here", hint="check the name with 'podman ps'")
        if ctr.status != "running":
            raise PodmanError("checkpoint", target.name, f"the container is {ctr.status}, "
                              f"not running", hint="only a running container can move")
        if info.cgroup_manager != "cgroupfs":
            raise PodmanError("checkpoint", target.name, f"Podman's cgroup manager is "
                              f"{info.cgroup_manager}; ferryman's runc path needs cgroupfs",
                              hint="set cgroup_manager = \"cgroupfs\" in containers.conf")
        runc_target = RuncTarget(ctr.id, target.runc_root, target.runc_binary)
        runc = Runc(target.runc_binary, target.runc_root)
        try:
            state = await runc.state(ctr.id)
        except RuncError as exc:
            raise PodmanError("checkpoint", target.name, f"runc cannot see it ({exc.reason})",
                              hint=f"Podman's runtime is {info.runtime} ({info.runtime_path});"
                                   " ferryman dumps through runc: give its state root "
                                   "(--runc-root)") from exc
        if state is None:
            raise PodmanError("checkpoint", target.name, f"runc has no container {ctr.id} "
                              f"under {target.runc_root}",
                              hint="Podman must run it with runc; give runc's state root "
                                   "(--runc-root)")
        box = cls(target, podman, info, ctr=ctr, runc_target=runc_target, timings=timings)
        SourceContainer.__init__(box, runc_target, runc, state, runc.config_of(state))
        box.presynced = True  # nothing to rsync: Podman makes the rootfs from the image
        return box

    async def after_commit(self) -> None:
        """The container is the destination's: its (exited) record here goes. Not at the
        end of the dump: a lazy dump may end before the commit (every page went), and the
        served copy lives, stopped, until its page tail is over."""
        try:
            await self.podman.remove(self.ctr.id)
        except FerrymanError as exc:
            log.warning("the moved container's record stays here (stopped): %s", exc)

    async def after_loss(self) -> None:
        """Lost in post-copy: Podman's record stays ('exited'): ``podman start`` runs the
        container again from its image, the way to restart it from its own state."""

    def forget_argv(self) -> list[str]:
        return []  # its record stays ('exited') after a controller died: 'podman rm' by hand

    def planned(self) -> PlannedPodman:  # type: ignore[override]
        return PlannedPodman(self.ctr.id, self.ctr.name, self.ctr.image_id)

    def podman_dumper(self, ctl_dir: Path, workdir: Path, *,
                      env: Mapping[str, str] | None = None) -> PodmanDumper:
        self.workdir = workdir
        return PodmanDumper(self, self.runc, ctl_dir, workdir,
                            on_frozen=self._start_diff, timings=self.timings, env=env)

    def _start_diff(self) -> None:
        """Frozen (our cgroup freeze at CRIU's pre-dump): the rootfs is final."""
        if self._diff is None and self.workdir is not None:
            self._diff = asyncio.ensure_future(self._write_diff())

    async def _write_diff(self) -> None:
        assert self.workdir is not None
        t0 = time.monotonic()
        size = await asyncio.to_thread(pm.write_rootfs_diff, self.workdir, self.ctr)
        self.timings["rootfs_diff_ms"] = (time.monotonic() - t0) * 1000
        self.timings["rootfs_diff_bytes"] = float(size)

    async def rootfs_done(self) -> None:
        if self._diff is None:  # CRIU froze it itself: the rootfs is final now
            self._start_diff()
        if self._diff is not None:
            await self._diff

    def start_final_sync(self, host: str, port: int, creds: NodeCredentials) -> None:
        self._start_diff()

    async def final_sync(self, host: str, port: int, creds: NodeCredentials) -> str:
        return (f"Podman export files and rootfs changes "
                f"({int(self.timings.get('rootfs_diff_bytes', 0)) >> 10} KiB) went with the "
                f"images")


# -- hooks ---------------------------------------------------------------------------------


async def source_open(role: SourceRole, target: PodmanTarget) -> PodmanSource:
    """Before anything else: Podman's container, running under runc; its init is the PID."""
    box = await PodmanSource.open_podman(target, role.report.sync)
    role.report.container = box.ctr.name  # the source's PID: box.pid (source.py resolves it)
    role.dumper = box.podman_dumper(role.workdir / "runc-hold", role.workdir, env=role.criu.env)
    role.opts.progress("HELLO", f"Podman container {box.ctr.name} ({box.ctr.id[:12]}): PID "
                       f"{box.pid}, image {box.ctr.image_name}")
    return box
