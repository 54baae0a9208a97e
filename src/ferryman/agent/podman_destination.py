"""Podman containers in the DESTINATION role: checked at the Plan, restored through
``podman container restore --import`` from the files that arrived, and their live
connections through a published port held until Podman's NAT state is made here.

Split from agent/podman.py (the SOURCE's side and the Plan's description); the layout of
what is imported is targets/podman.py's, the connections' hold targets/podman_nat.py's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from ferryman.agent.bundles import BundleSlot
from ferryman.agent.config import AgentConfig
from ferryman.agent.container import DestinationContainer
from ferryman.agent.container import destination_prepare as runc_prepare
from ferryman.agent.podman import KIND, PlannedPodman, plan_kind
from ferryman.criu.filelocks import dumped_file_locks
from ferryman.errors import CriuError, FerrymanError, PodmanError
from ferryman.targets import podman as pm
from ferryman.targets import podman_nat as nat

__all__ = ["PodmanDestination", "destination_prepare"]

log = logging.getLogger(__name__)
IMPORT_ARCHIVE = "podman-import.tar"
NAT_WAIT = 10.0  # s: the longest hold of a restored connection's segments (nat_arrives)
RESTORE_CONF = "podman-criu.conf"


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
        self.nat: list[tuple[nat.Connection, int]] = []  # connections via published ports
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
        if dumped_file_locks(images_dir):  # runc checkpoint dumped them (runc_checkpoint.py)
            args.append("--file-locks")
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
            conns = nat.image_connections(images_dir)
        except (OSError, ValueError) as exc:
            log.warning("cannot read the connections to translate: %s", exc)
            return
        published = nat.published_ports(config if isinstance(config, dict) else {})
        self.nat = [(c, published[c.local_port]) for c in conns if c.local_port in published]
        if self.nat:
            table = nat.hold_table(self.podman_plan.id)
            await _run("nft", "-f", "-", stdin=nat.hold_ruleset(table, [c for c, _ in self.nat]))
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
                if not await _run(*nat.conntrack_get_argv(c, service_ip, host_port),
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
    return CriuError("restore", log_path=log_path, reason=f"podman restore {name}: {reason}")



async def destination_prepare(cfg: AgentConfig, target: str, peer: str
                              ) -> tuple[DestinationContainer, int]:
    """A Podman container's checks (no sync listener), or runc's."""
    if plan_kind(target) != KIND:
        return await runc_prepare(cfg, target, peer)
    return await PodmanDestination.prepare_podman(target, cfg), 0
