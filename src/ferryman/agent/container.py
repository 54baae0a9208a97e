"""Containers in the SOURCE and DESTINATION roles: the runc-specific steps, called as hooks.

SOURCE (:class:`SourceContainer`): find the running container and its bundle, describe it in
the Plan (:class:`PlannedContainer`, JSON), sync its files while it runs and again while it is
frozen (at CRIU's post-dump), and dump it with ``runc checkpoint``
(:class:`~ferryman.targets.runc_checkpoint.RuncDumper`).

DESTINATION (:class:`DestinationContainer`): check the plan (runc present, no container with
that id here), claim the container's directories under this agent's bundle root
(:mod:`ferryman.agent.bundles`: the source names the container, never a path here), open the
sync listener for the source into those directories only, restore with ``runc restore``
(stopped until the commit) and, on failure, delete what it restored and synced.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ferryman import wire
from ferryman.agent.bundles import BundleSlot
from ferryman.agent.config import AgentConfig
from ferryman.agent.gate import end_check
from ferryman.errors import (
    FerrymanError,
    RemoteProtocolError,
    RuncError,
    RuncMissing,
)
from ferryman.fs import rsync, snapshot
from ferryman.fs.server import SyncServer
from ferryman.migration.runc_checks import RSYNC_FEATURE, RUNC_FEATURE
from ferryman.pki import NodeCredentials, tls
from ferryman.targets import runc_checkpoint
from ferryman.targets.process import ProcessTree
from ferryman.targets.runc import (
    BundleConfig,
    ContainerState,
    Runc,
    RuncTarget,
    check_id,
    check_relative,
    rootfs_in_bundle,
    sync_paths,
    sync_targets,
)
from ferryman.targets.runc_checkpoint import RuncDumper
from ferryman.targets.workload import Workload

if TYPE_CHECKING:
    from ferryman.agent.role import SourceRole

__all__ = ["DestinationContainer", "PlannedContainer", "RuncTarget", "SourceContainer",
           "destination_prepare", "source_final_sync", "source_open", "source_presync",
           "tools_present", "with_tools"]

log = logging.getLogger(__name__)
MAX_TARGET_CHARS = 4096  # an id and a relative path


@dataclass(frozen=True, slots=True)
class PlannedContainer:
    """The container as the Plan describes it (``Plan.target``): its id, and where its rootfs
    lies relative to its bundle (None: outside it, synced on its own). No paths of either
    node: the destination keeps the files where it decides (agent/bundles.py)."""

    id: str
    rootfs: str | None
    kind: str = "runc"

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "id": self.id, "rootfs": self.rootfs},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PlannedContainer:
        """Checked like any network input: RemoteProtocolError when malformed."""
        if len(text) > MAX_TARGET_CHARS:
            raise RemoteProtocolError(f"Plan.target: more than {MAX_TARGET_CHARS} characters")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # nesting deeper than the decoder recurses
            raise RemoteProtocolError(f"Plan.target is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("kind") != "runc":
            raise RemoteProtocolError("Plan.target: only runc containers are known here")
        cid, rootfs = data.get("id"), data.get("rootfs")
        if set(data) != {"kind", "id", "rootfs"} or not isinstance(cid, str) or \
                not isinstance(rootfs, str | None):
            raise RemoteProtocolError("Plan.target: needs the container's id and rootfs, and "
                                      "nothing else (paths are the destination's to choose)")
        try:
            check_id(cid)
            if rootfs is not None:
                check_relative(rootfs)
        except FerrymanError as exc:
            raise RemoteProtocolError(f"Plan.target: {exc.message}") from exc
        return cls(cid, rootfs)


class SourceContainer:
    """A running container on this node, about to move: a ``targets.workload.Workload``."""

    kind = "runc"
    process_preflight = False  # checked by runc and the destination's Plan
    presyncs = True  # its bundle and rootfs, by rsync while it runs
    syncs_frozen = True  # and what changed since, while frozen
    keeps_shared = False  # runc restores its own FIFOs and sockets

    def __init__(self, target: RuncTarget, runc: Runc, state: ContainerState,
                 config: BundleConfig) -> None:
        self.target = target
        self.runc = runc
        self.state = state
        self.config = config
        self.tree = ProcessTree.of(state.pid)  # its identity, resolved once: its init
        self.synced: dict[str, float] = {}
        self.presynced = False
        self._final: asyncio.Future[str] | None = None
        self._before: snapshot.Snapshot | None = None  # the synced files, as the pre-sync began

    @classmethod
    async def open(cls, target: RuncTarget) -> SourceContainer:
        """RuncMissing, NoSuchContainer (unknown id, or not running), or the container."""
        runc = Runc(target.binary, target.root)
        state = await runc.running(target.id)
        config = runc.config_of(state)
        if config.terminal:
            raise RuncError("checkpoint", target.id, "its process has a terminal",
                            hint="run the container with \"terminal\": false and its stdio "
                                 "as pipes (CRIU cannot move a runc console)")
        return cls(target, runc, state, config)

    @property
    def pid(self) -> int:
        return self.state.pid

    def planned(self) -> PlannedContainer:
        return PlannedContainer(self.target.id, rootfs_in_bundle(self.config))

    def planned_target(self) -> str:
        return self.planned().to_json()

    def dumper(self, ctl_dir: Path, on_frozen: Callable[[], None] | None = None,
               timings: dict[str, float] | None = None,
               env: Mapping[str, str] | None = None) -> RuncDumper:
        return RuncDumper(self.runc, self.target.id, ctl_dir, on_frozen, timings, env=env)

    async def after_commit(self) -> None:
        """The migration committed and the source copy is gone: its runc record goes (a
        cold dump's runc removed it already; a lazy one's stays, its tasks killed after the
        page tail, targets/runc.py:checkpoint_argv)."""
        try:
            await self.runc.delete(self.target.id)
        except FerrymanError as exc:
            log.warning("the moved container's runc record stays here: %s", exc)

    async def after_loss(self) -> None:
        """Lost in post-copy: its tasks are killed; runc cannot start a stopped container
        again, so its record goes too."""
        await self.after_commit()

    def forget_argv(self) -> list[str]:
        return self.runc.argv("delete", "--force", check_id(self.target.id))

    def start_final_sync(self, host: str, port: int, creds: NodeCredentials) -> None:
        """The container's cgroup is frozen (by us, at CRIU's pre-dump): its files are final,
        so the last rsync, if one is needed, runs while CRIU dumps, not after it."""
        self._final = asyncio.ensure_future(self._final_sync(host, port, creds))
        self._final.add_done_callback(_retrieved)

    async def final_sync(self, host: str, port: int, creds: NodeCredentials) -> str:
        """The last rsync (started early, or now); a progress line."""
        task, self._final = self._final, None
        if task is None:
            return await self._final_sync(host, port, creds)
        return await task

    async def _final_sync(self, host: str, port: int, creds: NodeCredentials) -> str:
        """Phase 2, unless nothing under the synced paths changed since the pre-sync began
        (fs/snapshot.py): then the pre-sync's copy is final and no rsync starts."""
        if self._before is not None:
            t0 = time.monotonic()
            after = await asyncio.to_thread(snapshot.take, sync_paths(self.config))
            took = time.monotonic() - t0
            changed = snapshot.differences(self._before, after)
            if not changed:
                self.synced.update(final_sync_ms=took * 1000, final_sync_bytes=0.0,
                                   final_sync_skipped=1.0)
                return (f"nothing changed since the pre-sync ({len(after)} entries checked in "
                        f"{took * 1000:.0f} ms): no rsync")
            log.info("changed since the pre-sync (rsync again): %s", ", ".join(changed))
        return await self.sync(2, host, port, creds)

    async def sync(self, phase: int, host: str, port: int, creds: NodeCredentials) -> str:
        """Copy the bundle (and an outside rootfs) to ``host``; returns a progress line."""
        if phase == 1:  # before it copies: a change while it copies shows as a change
            self._before = await asyncio.to_thread(snapshot.take, sync_paths(self.config))
        rsh = rsync.tunnel_rsh(port, creds.ca, creds.cert, creds.key)
        total, took = 0, 0.0
        for name, path in sync_targets(self.config):
            result = await rsync.sync(path, host, dest=name, rsh=rsh, phase=phase)
            total += result.bytes_sent
            took += result.seconds
        name = "presync" if phase == 1 else "final_sync"
        self.synced[f"{name}_ms"] = took * 1000
        self.synced[f"{name}_bytes"] = float(total)
        return f"{', '.join(str(p) for p in sync_paths(self.config))}: {total >> 10} KiB " \
               f"in {took * 1000:.0f} ms"


def _retrieved(task: asyncio.Future[str]) -> None:
    """An early final sync that nobody awaits (the dump failed first) is not an error."""
    if not task.cancelled():
        task.exception()


class DestinationContainer:
    """A container planned to arrive here, into ``slot`` (claimed)."""

    def __init__(self, planned: PlannedContainer, runc: Runc, output: Path,
                 slot: BundleSlot) -> None:
        self.planned = planned
        self.runc = runc
        self.output = output
        self.slot = slot
        self.server: SyncServer | None = None
        self.restored = False

    @classmethod
    async def prepare(cls, target: str, runc: Runc, output_dir: Path, bundle_root: Path,
                      node: str) -> DestinationContainer:
        """Checks before Ready; FerrymanError says why this node refuses."""
        planned = PlannedContainer.from_json(target)
        try:
            existing = await runc.state(planned.id)
        except RuncMissing as exc:
            raise RuncMissing(runc.binary, node) from exc
        if existing is not None:
            raise RuncError("restore", planned.id, f"a container with id {planned.id!r} "
                            f"already exists on {node} ({existing.status})",
                            hint="delete it there ('runc delete'), or move another one")
        slot = BundleSlot(bundle_root, planned.id, planned.rootfs)
        slot.claim()
        return cls(planned, runc, output_dir / f"{planned.id}.log", slot)

    async def listen(self, ctx: ssl.SSLContext, peer: str, host: str) -> int:
        self.server = SyncServer(ctx, peer, self.slot.sync_targets())
        return await self.server.start(host)

    async def restore(self, images_dir: Path, *, lazy: bool, tcp_established: bool) -> int:
        if self.server is not None:
            await self.server.close()
            self.server = None
        existing = await self.runc.state(self.planned.id)
        if existing is not None:  # made since the Plan (an operator, another migration)
            raise RuncError("restore", self.planned.id, f"a container with id "
                            f"{self.planned.id!r} appeared here since the plan "
                            f"({existing.status})", hint="delete it there ('runc delete'), or "
                                                         "move another one")
        self.slot.localize()
        self.restored = True  # from now on runc may have made it: cleanup deletes ours only
        pid = await runc_checkpoint.restore(
            self.runc, self.planned.id, bundle=self.slot.bundle,
            images_dir=images_dir, output=self.output, lazy=lazy,
            tcp_established=tcp_established)
        self.slot.mark_restored()
        return pid

    async def cleanup(self, *, delete: bool) -> None:
        """Stop listening; ``delete`` a restored (uncommitted) container and its synced
        files (a committed container keeps them: it runs from them)."""
        if self.server is not None:
            await self.server.close()
            self.server = None
        if self.restored and delete:
            try:
                await self._delete_ours()
            except FerrymanError as exc:
                log.warning("could not delete container %s: %s", self.planned.id, exc)
            self.restored = False
        self.slot.release(remove=delete)

    async def _delete_ours(self) -> None:
        """``runc delete`` the container of that id only if runc made it from this
        migration's bundle (the slot it holds locked): another one keeps running."""
        state = await self.runc.state(self.planned.id)
        if state is None:
            return
        if state.bundle.resolve() != self.slot.bundle.resolve():
            log.warning("container %s (bundle %s) is not the one this migration restored: "
                        "left alone", self.planned.id, state.bundle)
            return
        await self.runc.delete(self.planned.id)


# -- hooks: the few lines agent/source.py and agent/destination.py call --------------------


async def source_open(role: SourceRole, target: RuncTarget) -> SourceContainer:
    """Before anything else: the container must be running; its init PID is the workload."""
    box = await SourceContainer.open(target)
    role.report.container = target.id
    role.dumper = box.dumper(role.workdir / "runc-hold", on_frozen=lambda: box.start_final_sync(
        role.ch.peer_ip if role.ch else "", role.sync_port, role.opts.creds),
        timings=role.report.sync, env=role.criu.env)
    role.opts.progress("HELLO", f"runc container {target.id}: PID {box.pid}, bundle "
                       f"{box.config.bundle}")
    return box


async def source_presync(role: SourceRole, box: Workload, sync_port: int) -> None:
    """PRESYNC (the driver entered it): the bundle and rootfs while the container runs
    (nothing frozen yet); once.

    Pre-copy runs it before its first pre-dump, so that the dirty pages the rsync causes
    are still copied while the container runs; the final dump then finds it done.
    """
    assert role.ch is not None
    if box.presynced:
        return
    try:
        detail = await box.sync(1, role.ch.peer_ip, sync_port, role.opts.creds)
    except FerrymanError:
        await end_check(role.ch, "the pre-sync failed")
        raise
    finally:
        role.report.sync.update(box.synced)
    box.presynced = True
    role.opts.progress("PRESYNC", detail)


async def source_final_sync(role: SourceRole, box: Workload, sync_port: int) -> None:
    """While frozen (post-dump): what changed since the pre-sync, with --delete."""
    assert role.ch is not None
    try:
        detail = await box.final_sync(role.ch.peer_ip, sync_port, role.opts.creds)
    finally:
        role.report.sync.update(box.synced)
    role.opts.progress("TRANSFERRING", f"final rsync while frozen: {detail}")


async def destination_prepare(cfg: AgentConfig, target: str, peer: str
                              ) -> tuple[DestinationContainer, int]:
    """The container's checks and its sync listener; FerrymanError when this node refuses."""
    runc = Runc(cfg.runc_bin, cfg.runc_root)
    box = await DestinationContainer.prepare(target, runc, cfg.state_dir / "containers",
                                             cfg.bundles, cfg.name)
    try:
        port = await box.listen(tls.server_context(cfg.creds), peer, cfg.listen_host)
    except BaseException:
        await box.cleanup(delete=True)
        raise
    return box, port


def tools_present(runc_bin: str = "runc", rsync_bin: str = "rsync") -> dict[str, bool]:
    """Whether this node has runc and rsync (Hello features, pre-flight rows)."""
    return {RUNC_FEATURE: shutil.which(runc_bin) is not None,
            RSYNC_FEATURE: shutil.which(rsync_bin) is not None}


def with_tools(hello: wire.Hello, cfg: AgentConfig) -> wire.Hello:
    """The agent's Hello, telling whether it can receive containers."""
    return replace(hello, features={**hello.features, **tools_present(cfg.runc_bin)})
