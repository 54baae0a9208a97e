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
from typing import TYPE_CHECKING, Any

from ferryman.agent.bundles import BundleSlot
from ferryman.agent.config import AgentConfig
from ferryman.agent.container import (
    DestinationContainer,
    RuncTarget,
    SourceContainer,
)
from ferryman.agent.container import destination_prepare as runc_prepare
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
IMPORT_ARCHIVE = "podman-import.tar"
NAT_WAIT = 10.0  # s: the longest hold of a restored connection's segments (nat_arrives)
RESTORE_CONF = "podman-criu.conf"


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
                   freeze_cgroup: str | None = None, log_file: str = "dump.log") -> None:
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
                           freeze_cgroup=freeze_cgroup, log_file=log_file)


class PodmanSource(SourceContainer):
    """A running Podman container on this node, about to move."""

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


class PodmanDestination(DestinationContainer):
    """A Podman container planned to arrive here."""

    def __init__(self, planned_podman: PlannedPodman, podman: pm.Podman, state_dir: Path
                 ) -> None:
        self.podman_plan = planned_podman
        self.podman = podman
        self.server = None
        self.restored = False
        self.output = state_dir / "containers" / f"{planned_podman.id}.log"
        # never claimed: only the orphan path releases it (unlocked, nothing removed)
        self.slot = BundleSlot(state_dir / "podman-slots", planned_podman.id, None)
        self.pidfile: Path | None = None  # where conmon writes the restored init's PID
        self.nat: list[tuple[pm.Connection, int]] = []  # connections via published ports
        self.held_table = ""  # nftables table holding back what they send (before_restore)
        self.releasing: asyncio.Future[None] | None = None  # lifts the hold (nat_arrives)

    @classmethod
    async def prepare_podman(cls, target: str, cfg: AgentConfig) -> PodmanDestination:
        planned = PlannedPodman.from_json(target)
        podman = pm.Podman()
        if not await podman.image_exists(planned.image):
            raise PodmanError("restore", planned.name, f"{cfg.name} has no image "
                              f"{planned.image[:19]}",
                              hint="copy it there first ('podman save' here, 'podman load' "
                                   "there, or pull it from a registry)")
        for what in (planned.name, planned.id):
            if await podman.container_exists(what):
                raise PodmanError("restore", planned.name, f"{cfg.name} already has a "
                                  f"container {what!r}",
                                  hint="remove it there ('podman rm'), or move another one")
        box = cls(planned, podman, cfg.state_dir)
        info = await podman.info()
        box.pidfile = info.run_root / "overlay-containers" / planned.id / "userdata" / "pidfile"
        return box

    async def restore(self, images_dir: Path, *, lazy: bool, tcp_established: bool) -> int:
        # (a container of that name or id made here since the plan fails Podman's import:
        # no check of our own in the frozen window, each podman run costs ~0.1 s)
        name = self.podman_plan.name
        conf = images_dir / RESTORE_CONF
        # lazy: CRIU's restore finds the lazy-pages daemon's socket in its work dir, which
        # under Podman is the container's bundle: the configuration points it here instead
        conf.write_text(pm.restore_conf(lazy=lazy, work_dir=images_dir if lazy else None))
        archive = images_dir / IMPORT_ARCHIVE
        await asyncio.to_thread(pm.build_archive, images_dir, archive, conf, (RESTORE_CONF,))
        args = ["container", "restore", "--import", str(archive)]
        if tcp_established:
            args.append("--tcp-established")
        self.restored = True  # from now on Podman may have made it: cleanup removes it
        rc, _, err = await self.podman.run(*args)
        archive.unlink(missing_ok=True)
        if rc != 0:
            log_path = _restore_log(err)
            raise _restore_error(name, pm.podman_message(err), log_path)
        pid = _read_pid(self.pidfile) if self.pidfile is not None else 0
        if pid > 0:  # conmon's record of the container's init: no podman run in the window
            return pid
        ctr = await self.podman.inspect(self.podman_plan.id)
        if ctr is None or ctr.pid <= 0:
            raise PodmanError("restore", name, "Podman restored it but reports no PID")
        return ctr.pid

    async def before_restore(self, images_dir: Path) -> None:
        """Live connections through published ports (Podman's bridge network, DNAT on this
        node): until their NAT state is here, what the restored ends send is held back
        (:func:`~ferryman.targets.podman.hold_ruleset`)."""
        try:
            config = json.loads((images_dir / pm.CONFIG_DUMP).read_text())
            conns = pm.image_connections(images_dir)
        except (OSError, ValueError) as exc:
            log.warning("cannot read the connections to translate: %s", exc)
            return
        published = pm.published_ports(config if isinstance(config, dict) else {})
        self.nat = [(c, published[c.local_port]) for c in conns if c.local_port in published]
        if self.nat:
            table = pm.hold_table(self.podman_plan.id)
            await _run("nft", "-f", "-", stdin=pm.hold_ruleset(table, [c for c, _ in self.nat]))
            self.held_table = table

    def nat_arrives(self, service_ip: str) -> None:
        """After the restore, the address coming up here: the hold stays until each
        connection's first segment from the client has passed Podman's DNAT here (making the
        conntrack entry, with the translation, that the container's answers then follow), at
        most ``NAT_WAIT`` s; in the background, the commit does not wait for it."""
        if self.held_table:
            self.releasing = asyncio.ensure_future(self._release_when_translated(service_ip))

    async def _release_when_translated(self, service_ip: str) -> None:
        t0 = time.monotonic()
        deadline = t0 + NAT_WAIT
        waiting = list(self.nat)
        while waiting and time.monotonic() < deadline:
            still = []
            for c, host_port in waiting:
                if not await _run(*pm.conntrack_get_argv(c, service_ip, host_port),
                                  quiet=True):
                    still.append((c, host_port))
            waiting = still
            if waiting:
                await asyncio.sleep(0.01)
        for c, host_port in waiting:
            log.warning("no segment of %s:%d -> %s:%d reached this node in %.0f s: its "
                        "answers go untranslated", c.peer, c.peer_port, service_ip, host_port,
                        NAT_WAIT)
        if len(waiting) < len(self.nat):
            log.info("%d of %d connections through published ports went through the DNAT "
                     "here; their hold lifted after %.0f ms", len(self.nat) - len(waiting),
                     len(self.nat), (time.monotonic() - t0) * 1000)
        await self.release_hold()

    async def release_hold(self) -> None:
        if self.held_table:
            await _run("nft", "delete", "table", "inet", self.held_table)
            self.held_table = ""

    async def cleanup(self, *, delete: bool) -> None:
        if self.releasing is not None and not delete:  # committed: let it finish
            await asyncio.gather(self.releasing, return_exceptions=True)
        elif self.releasing is not None:
            self.releasing.cancel()
            await asyncio.gather(self.releasing, return_exceptions=True)
        await self.release_hold()
        if self.restored and delete:
            try:
                await self.podman.remove(self.podman_plan.id)
            except FerrymanError as exc:
                log.warning("could not remove container %s: %s", self.podman_plan.name, exc)
            self.restored = False


async def _run(*argv: str, stdin: str | None = None, quiet: bool = False) -> bool:
    """A helper command (nft, conntrack); False, logged unless ``quiet``, when it fails."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        log.warning("%s is not installed: live connections through published ports will "
                    "be reset", argv[0])
        return False
    _, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode != 0 and not quiet:
        log.warning("%s: %s", " ".join(argv[:3]), err.decode(errors="replace").strip())
    return proc.returncode == 0


def _read_pid(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def _restore_log(err: str) -> str | None:
    for raw in err.split():
        word = raw.strip("\"',()")
        if word.endswith("restore.log"):
            return word
    return None


def _restore_error(name: str, reason: str, log_path: str | None) -> FerrymanError:
    from ferryman.errors import CriuError

    return CriuError("restore", log_path=log_path, reason=f"podman restore {name}: {reason}")


# -- hooks ---------------------------------------------------------------------------------


async def source_open(m: SourceRole, target: PodmanTarget) -> PodmanSource:
    """Before anything else: Podman's container, running under runc; its init is the PID."""
    box = await PodmanSource.open_podman(target, m.report.sync)
    m.report.container = box.ctr.name  # the source's PID: box.pid (source.py resolves it)
    m.dumper = box.podman_dumper(m.workdir / "runc-hold", m.workdir, env=m.criu.env)
    m.o.progress("HELLO", f"Podman container {box.ctr.name} ({box.ctr.id[:12]}): PID "
                 f"{box.pid}, image {box.ctr.image_name}")
    return box


async def destination_prepare(cfg: AgentConfig, target: str, peer: str
                              ) -> tuple[DestinationContainer, int]:
    """A Podman container's checks (no sync listener), or runc's."""
    if plan_kind(target) != KIND:
        return await runc_prepare(cfg, target, peer)
    return await PodmanDestination.prepare_podman(target, cfg), 0


def podman_facts(ctr: pm.PodmanContainer) -> dict[str, Any]:
    """What a report says of the container (name, image, labels)."""
    return {"id": ctr.id, "name": ctr.name, "image": ctr.image_name, "labels": ctr.labels}
