"""Podman containers: what ferryman asks of Podman, and the files Podman's import reads.

Podman owns the container record, the image and the configuration; ferryman owns the memory
path. On the source, the container's processes are dumped by ``runc checkpoint`` on Podman's
own runc state (:mod:`ferryman.targets.runc_checkpoint`: page server, lazy pages, the hold at
``post-dump``), because Podman runs its runtime with an environment of its own (no
``CRIU_CONFIG_FILE``) and has no page-server or lazy-pages options. What Podman's
``podman container restore --import`` needs besides CRIU's images is made here, in the layout
of Podman's ``--export`` archive:

- ``config.dump``: the container's configuration as Podman stores it (its bbolt record,
  :mod:`ferryman.targets.boltdb`, plus the networks Podman adds on export, without the
  short-id alias), with the source's default conmon/pid file paths cleared as Podman does;
- ``spec.dump``: the container's OCI spec (``config.json`` in its bundle);
- ``network.status``: its address per network, so the container keeps its IP;
- ``rootfs-diff.tar`` and ``deleted.files``: its changes to the image, from the overlay upper
  directory (files; whiteouts are deletions).

The destination packs those with the CRIU images into the archive (``checkpoint/``) and adds
an ``org.criu.config`` annotation to the spec, naming a CRIU configuration file: runc passes it
to CRIU on restore, which is how ``leave-stopped`` (and the network lock) reach a restore that
Podman and conmon run.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferryman.errors import PodmanError
from ferryman.host.prctl import die_with_parent
from ferryman.targets.boltdb import BoltError, BoltFile
from ferryman.targets.runc import DEFAULT_ROOT

CONFIG_DUMP = "config.dump"
SPEC_DUMP = "spec.dump"
NETWORK_STATUS = "network.status"
ROOTFS_DIFF = "rootfs-diff.tar"
DELETED_FILES = "deleted.files"
EXPORT_FILES = (CONFIG_DUMP, SPEC_DUMP, NETWORK_STATUS, ROOTFS_DIFF, DELETED_FILES)
PARENT = "parent"  # CRIU's link from an image set to the one it was dumped on top of
CRIU_CONFIG_ANNOTATION = "org.criu.config"
DB_NAME = "libpod/bolt_state.db"


@dataclass(frozen=True, slots=True)
class PodmanInfo:
    """``podman info``: where this Podman keeps its state, and how it runs containers."""

    graph_root: Path
    run_root: Path
    runtime: str  # the OCI runtime's name (runc, crun)
    runtime_path: str
    cgroup_manager: str  # cgroupfs or systemd


@dataclass(frozen=True, slots=True)
class PodmanContainer:
    """``podman container inspect``: the facts ferryman uses."""

    id: str
    name: str
    status: str
    pid: int
    image_id: str
    image_name: str
    runtime: str
    config_path: Path  # the OCI spec (userdata/config.json)
    upper_dir: Path | None  # overlay's upper directory: the container's changes
    labels: Mapping[str, str] = field(default_factory=dict)
    networks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_info(text: str) -> PodmanInfo:
    try:
        data = _obj(json.loads(text))
        store, host = _obj(data.get("store")), _obj(data.get("host"))
        oci = _obj(host.get("ociRuntime"))
        return PodmanInfo(Path(store["graphRoot"]), Path(store["runRoot"]),
                          str(oci.get("name", "")), str(oci.get("path", "")),
                          str(host.get("cgroupManager", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise PodmanError("info", "", f"unexpected 'podman info' output: {exc}") from exc


def parse_inspect(text: str) -> PodmanContainer:
    try:
        items = json.loads(text)
        data = _obj(items[0] if isinstance(items, list) and items else items)
        state, config = _obj(data.get("State")), _obj(data.get("Config"))
        upper = _obj(_obj(data.get("GraphDriver")).get("Data")).get("UpperDir")
        nets = _obj(_obj(data.get("NetworkSettings")).get("Networks"))

        return PodmanContainer(
            id=str(data["Id"]), name=str(data["Name"]), status=str(state.get("Status", "")),
            pid=int(state.get("Pid", 0)), image_id=str(data.get("Image", "")),
            image_name=str(data.get("ImageName", "")), runtime=str(data.get("OCIRuntime", "")),
            config_path=Path(str(data["OCIConfigPath"])),
            upper_dir=Path(upper) if isinstance(upper, str) and upper else None,
            labels={str(k): str(v) for k, v in _obj(config.get("Labels")).items()},
            networks={str(k): _obj(v) for k, v in nets.items()})
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise PodmanError("inspect", "", f"unexpected 'podman inspect' output: {exc}") from exc


class Podman:
    """The podman command (its storage and configuration as its environment says:
    ``CONTAINERS_CONF``, ``CONTAINERS_STORAGE_CONF``)."""

    def __init__(self, binary: str = "podman", env: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.env = dict(env) if env is not None else None

    async def run(self, *args: str, timeout: float = 120.0) -> tuple[int, str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.binary, *args, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=self.env, preexec_fn=die_with_parent)
        except FileNotFoundError as exc:
            raise PodmanError("start", "", f"{self.binary} is not installed",
                              hint="install Debian's podman package ('make setup' does)"
                              ) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise PodmanError(args[0], args[-1], f"no answer within {timeout:.0f} s") from exc
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def check(self, *args: str, what: str = "", timeout: float = 120.0) -> str:
        rc, out, err = await self.run(*args, timeout=timeout)
        if rc != 0:
            raise PodmanError(args[0], what, podman_message(err))
        return out

    async def info(self) -> PodmanInfo:
        return parse_info(await self.check("info", "--format", "json"))

    async def inspect(self, name: str) -> PodmanContainer | None:
        """The container named or numbered ``name``, or None when Podman has none."""
        rc, out, err = await self.run("container", "inspect", "--", name)
        if rc != 0:
            if "no such" in err.lower():
                return None
            raise PodmanError("inspect", name, podman_message(err))
        return parse_inspect(out)

    async def image_exists(self, image: str) -> bool:
        rc, _, _ = await self.run("image", "exists", "--", image)
        return rc == 0

    async def container_exists(self, name: str) -> bool:
        rc, _, _ = await self.run("container", "exists", "--", name)
        return rc == 0

    async def remove(self, name: str) -> None:
        """``podman rm --force --time 0`` (no stop timeout: what runs is stopped or gone):
        quiet when it is gone."""
        rc, _, err = await self.run("rm", "--force", "--time", "0", "--", name)
        if rc != 0 and "no such" not in err.lower():
            raise PodmanError("rm", name, podman_message(err))


def podman_message(stderr: str) -> str:
    """Podman's error (its ``Error: ...`` line), else its last line."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("Error: "):
            return ln[len("Error: "):]
    return lines[-1] if lines else "no message"


# -- source: the files of Podman's export, without the memory -------------------------------


def read_record(db_path: Path, container_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The container's stored configuration and per-network options (bbolt, read-only)."""
    try:
        data = db_path.read_bytes()
    except OSError as exc:
        raise PodmanError("export", container_id, f"cannot read {db_path}: {exc.strerror}"
                          ) from exc
    try:
        bucket = BoltFile(data).path(b"ctr", container_id.encode())
        if bucket is None:
            raise PodmanError("export", container_id, f"no record in {db_path}")
        raw = bucket.get(b"config")
        if raw is None:
            raise PodmanError("export", container_id, f"no configuration in {db_path}")
        config = json.loads(raw)
        nets: dict[str, Any] = {}
        nb = bucket.bucket(b"networks")
        for key, value, is_bucket in nb.items() if nb is not None else ():
            if not is_bucket:
                nets[key.decode()] = json.loads(value)
    except (BoltError, ValueError, UnicodeDecodeError) as exc:
        raise PodmanError("export", container_id, f"cannot read its record in {db_path}: "
                          f"{exc}") from exc
    if not isinstance(config, dict):
        raise PodmanError("export", container_id, "its stored configuration is not an object")
    return config, nets


def config_dump(config: Mapping[str, Any], networks: Mapping[str, Any],
                run_root: Path) -> dict[str, Any]:
    """What Podman's export writes as config.dump: the stored configuration with the
    networks (without the short-id alias, which names the old container); conmon and pid
    files under this node's run root are cleared, as Podman's import clears those under
    its own (their defaults are made again there)."""
    out = dict(config)
    short = str(out.get("id", ""))[:12]
    nets = {}
    for name, given in networks.items():
        opts = dict(given) if isinstance(given, dict) else {}
        aliases = [a for a in opts.get("aliases") or [] if a != short]
        if aliases:
            opts["aliases"] = aliases
        else:
            opts.pop("aliases", None)
        nets[name] = opts
    if nets:
        out["newNetworks"] = nets
    for key in ("conmonPidFile", "pid_file"):
        value = out.get(key)
        if isinstance(value, str) and value.startswith(str(run_root)):
            out[key] = ""
    return out


def network_status(container: PodmanContainer, networks: Mapping[str, Any]
                   ) -> dict[str, Any]:
    """network.status: per network, the interface with its address and MAC (inspect's)."""
    out: dict[str, Any] = {}
    for name, net in container.networks.items():
        ip, prefix = net.get("IPAddress"), net.get("IPPrefixLen")
        if not ip:
            continue
        iface = _obj(networks.get(name)).get("interface_name") or "eth0"
        subnet: dict[str, Any] = {"ipnet": f"{ip}/{prefix}"}
        if net.get("Gateway"):
            subnet["gateway"] = net["Gateway"]
        out[name] = {"interfaces": {iface: {"subnets": [subnet],
                                            "mac_address": net.get("MacAddress", "")}}}
    return out


def rootfs_diff(upper: Path | None, tar_path: Path) -> list[str]:
    """The container's changes to its image: files and directories of the overlay upper
    directory into ``tar_path`` (paths relative to the rootfs); returns the deleted paths
    (overlay whiteouts). An opaque directory is copied whole (what lay under it stays)."""
    deleted: list[str] = []
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        if upper is None:
            return deleted
        for root, dirs, files in os.walk(upper):
            base = Path(root)
            for name in sorted(dirs) + sorted(files):
                path = base / name
                rel = str(path.relative_to(upper))
                st = path.lstat()
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    deleted.append("/" + rel)
                    continue
                tar.add(path, arcname=rel, recursive=False)
    return sorted(deleted)


def write_export(directory: Path, container: PodmanContainer, info: PodmanInfo) -> int:
    """config.dump, spec.dump and network.status into ``directory`` (before the freeze:
    none changes while the container runs); their total size."""
    config, nets = read_record(info.graph_root / DB_NAME, container.id)
    try:
        spec = container.config_path.read_bytes()
    except OSError as exc:
        raise PodmanError("export", container.name, f"cannot read its OCI spec "
                          f"{container.config_path}: {exc.strerror}") from exc
    files = {CONFIG_DUMP: json.dumps(config_dump(config, nets, info.run_root)).encode(),
             SPEC_DUMP: spec,
             NETWORK_STATUS: json.dumps(network_status(container, nets)).encode()}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return sum(len(d) for d in files.values())


def write_rootfs_diff(directory: Path, container: PodmanContainer) -> int:
    """rootfs-diff.tar and deleted.files into ``directory`` (frozen: final); their size."""
    deleted = rootfs_diff(container.upper_dir, directory / ROOTFS_DIFF)
    (directory / DELETED_FILES).write_text(json.dumps(deleted))
    return (directory / ROOTFS_DIFF).stat().st_size + (directory / DELETED_FILES).stat().st_size


# -- destination: Podman's import archive from what arrived ---------------------------------


def restore_conf(*, lazy: bool = False, work_dir: Path | None = None) -> str:
    """The CRIU configuration file the restored spec names (``org.criu.config``)."""
    lines = ["network-lock nftables", "leave-stopped"]
    if lazy:
        lines.append("lazy-pages")
    if work_dir is not None:
        lines.append(f'work-dir "{work_dir}"')
    return "\n".join(lines) + "\n"


def with_criu_config(spec_text: bytes, conf: Path) -> bytes:
    """The OCI spec with ``org.criu.config`` naming ``conf``."""
    try:
        spec = json.loads(spec_text)
    except ValueError as exc:
        raise PodmanError("restore", "", f"spec.dump is not JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise PodmanError("restore", "", "spec.dump is not a JSON object")
    annotations = dict(_obj(spec.get("annotations")))
    annotations[CRIU_CONFIG_ANNOTATION] = str(conf)
    spec["annotations"] = annotations
    return json.dumps(spec).encode()


def build_archive(images: Path, archive: Path, conf: Path,
                  skip: Sequence[str] = ()) -> None:
    """Podman's import layout: the export files at the top (spec.dump naming ``conf``), the
    CRIU images under ``checkpoint/``, and after a pre-copy the pre-dumps' image sets that
    ``parent`` links chain (CRIU reads the pages a pagemap marks in-parent there) as real
    directories ``checkpoint/parent``, ``checkpoint/parent/parent``... (Podman's untar
    refuses links out of the archive; CRIU opens ``parent`` whatever it is)."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in EXPORT_FILES:
            path = images / name
            if name == SPEC_DUMP:
                data = with_criu_config(path.read_bytes(), conf)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o600
                tar.addfile(info, io.BytesIO(data))
            elif path.exists():
                tar.add(path, arcname=name)
        d = tarfile.TarInfo("checkpoint")
        d.type = tarfile.DIRTYPE
        d.mode = 0o700
        tar.addfile(d)
        for path in sorted(images.iterdir()):
            if path.name in EXPORT_FILES or path.name in skip or not path.is_file() \
                    or path.is_symlink() or path.name.endswith(".log") or path == archive:
                continue
            tar.add(path, arcname=f"checkpoint/{path.name}")
        _add_parents(tar, images)


def _add_parents(tar: tarfile.TarFile, images: Path) -> None:
    """The image sets ``images/parent`` chains, each as the next ``parent`` directory."""
    seen: set[Path] = set()
    level, prefix = images / PARENT, f"checkpoint/{PARENT}"
    while level.is_dir() and level.resolve() not in seen:
        seen.add(level.resolve())
        d = tarfile.TarInfo(prefix)
        d.type = tarfile.DIRTYPE
        d.mode = 0o700
        tar.addfile(d)
        for path in sorted(level.iterdir()):
            if path.is_file() and not path.is_symlink() and path.name.endswith(".img"):
                tar.add(path, arcname=f"{prefix}/{path.name}")
        level, prefix = level / PARENT, f"{prefix}/{PARENT}"


@dataclass(frozen=True, slots=True)
class PodmanTarget:
    """What ``ferryman migrate --podman NAME`` names; runc's state root under Podman."""

    name: str
    runc_root: Path = DEFAULT_ROOT
    runc_binary: str = "runc"
    podman: str = "podman"
