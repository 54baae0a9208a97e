"""The runc container target: find a container, read its bundle, build runc's command lines.

The pure pieces (``config.json`` and ``runc state`` parsing, argv building, the CRIU
configuration file and ferryman's hold script) are functions of their inputs, unit-tested;
:class:`Runc` runs the binary and translates its failures into :class:`RuncError`.

CRIU options that runc 1.1.5 has no flag for go through a CRIU configuration file named by
``CRIU_CONFIG_FILE`` in runc's environment: runc starts ``criu swrk`` with its own environment,
CRIU parses that file before it reads the RPC request, and every RPC setting that runc leaves
unset keeps the file's value (CRIU 4.2.1, ``crtools.c`` and ``cr-service.c``). We use it for:

- ``tls``, ``tls-cacert``, ``tls-cert``, ``tls-key`` (and ``tls-no-cn-verify`` when the dump
  itself serves pages, in post-copy): memory travels over CRIU's TLS like for process trees;
- ``action-script``: ferryman's hold at ``post-dump`` (see :func:`hold_script`), the runc
  equivalent of answering CRIU's post-dump notification: the container stays frozen until the
  destination has restored it, and resumes where it was when we answer "no";
- ``network-lock nftables`` (runc leaves CRIU's RPC default, iptables);
- ``leave-stopped`` on restore: the container is restored stopped and runs only on commit.

runc also honours ``/etc/criu/runc.conf`` (or the file named by the bundle's
``org.criu.config`` annotation) as an RPC configuration file that overrides RPC settings; that
one is per host or per bundle, so ferryman does not write it, and it must not turn TLS off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ferryman.criu.client import PageServerAddress, TlsFiles
from ferryman.errors import NoSuchContainer, RuncError, RuncMissing
from ferryman.host.prctl import die_with_parent

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/run/runc")
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
_MSG_RE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class RuncTarget:
    """What ``ferryman migrate --runc ID`` names: the container, runc's state root, binary."""

    id: str
    root: Path = DEFAULT_ROOT
    binary: str = "runc"


@dataclass(frozen=True, slots=True)
class BundleConfig:
    """What ferryman needs from a bundle's ``config.json``."""

    bundle: Path
    rootfs: Path
    netns: str | None  # the network namespace path the container joins, if any
    terminal: bool


@dataclass(frozen=True, slots=True)
class ContainerState:
    """``runc state ID``: the container's init PID (host view), status and paths."""

    id: str
    pid: int
    status: str
    bundle: Path
    rootfs: Path


def check_id(container: str) -> str:
    if not ID_RE.fullmatch(container):
        raise RuncError("state", container, "not a valid container id",
                        hint="ids are letters, digits and _.+- (see 'runc list')")
    return container


def _object(text: str, what: str) -> Mapping[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than it recurses
        raise RuncError("state", "", f"{what} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RuncError("state", "", f"{what} is not a JSON object")
    return data


def parse_bundle_config(text: str, bundle: Path) -> BundleConfig:
    """The rootfs (resolved against ``bundle``), network namespace path and terminal flag."""
    data = _object(text, f"{bundle}/config.json")
    root = data.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise RuncError("config", "", f"{bundle}/config.json has no root.path")
    rootfs = Path(root["path"])
    if not rootfs.is_absolute():
        rootfs = bundle / rootfs
    netns = None
    linux = data.get("linux")
    namespaces = linux.get("namespaces", []) if isinstance(linux, dict) else []
    for ns in namespaces if isinstance(namespaces, list) else []:
        if isinstance(ns, dict) and ns.get("type") == "network" and ns.get("path"):
            netns = str(ns["path"])
    process = data.get("process")
    terminal = bool(process.get("terminal")) if isinstance(process, dict) else False
    return BundleConfig(bundle, rootfs, netns, terminal)


def parse_state(text: str) -> ContainerState:
    data = _object(text, "runc state output")
    try:
        return ContainerState(id=str(data["id"]), pid=int(data["pid"]),
                              status=str(data["status"]), bundle=Path(data["bundle"]),
                              rootfs=Path(data["rootfs"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RuncError("state", str(data.get("id", "")),
                        f"unexpected runc state output: {exc}") from exc


SYNC_BUNDLE = "bundle"  # the names a source syncs into; the destination maps them to its
SYNC_ROOTFS = "rootfs"  # own directories (agent/bundles.py), the source never names a path


def rootfs_in_bundle(cfg: BundleConfig) -> str | None:
    """The rootfs relative to the bundle (``"."`` when it is the bundle), None if elsewhere."""
    if cfg.rootfs == cfg.bundle:
        return "."
    if cfg.bundle in cfg.rootfs.parents:
        return str(cfg.rootfs.relative_to(cfg.bundle))
    return None


def sync_targets(cfg: BundleConfig) -> tuple[tuple[str, Path], ...]:
    """What to copy to the destination, by name: the bundle, and the rootfs if elsewhere."""
    if rootfs_in_bundle(cfg) is not None:
        return ((SYNC_BUNDLE, cfg.bundle),)
    return ((SYNC_BUNDLE, cfg.bundle), (SYNC_ROOTFS, cfg.rootfs))


def sync_paths(cfg: BundleConfig) -> tuple[Path, ...]:
    """Directories to copy to the destination: the bundle, and the rootfs if it is elsewhere."""
    return tuple(path for _, path in sync_targets(cfg))


def check_relative(path: str) -> str:
    """A rootfs path inside a bundle as a Plan names it: relative, normal, no ``..``."""
    p = PurePosixPath(path)
    if not path or len(path) > 1024 or "\0" in path or p.is_absolute() or ".." in p.parts \
            or (str(p) != path):
        raise RuncError("restore", "", f"not a path inside a bundle: {path[:100]!r}")
    return path


def with_rootfs(text: str, bundle: Path, rootfs: Path) -> str | None:
    """``config.json`` text whose ``root.path`` names ``rootfs``, or None when it already
    does (resolved against ``bundle``): the destination's copy of a bundle points at the
    destination's own rootfs, wherever the source kept it."""
    data = dict(_object(text, f"{bundle}/config.json"))
    if parse_bundle_config(text, bundle).rootfs == rootfs:
        return None
    data["root"] = {**data["root"], "path": str(rootfs)}
    return json.dumps(data, indent=2)


def runc_message(stderr: str, status: int | None = None) -> str:
    """runc's error from its log lines (``level=error msg="..."``), else its last line;
    with nothing there, its exit ``status`` (negative: the signal that killed it)."""
    msgs = [m.group(1).encode().decode("unicode_escape") for m in _MSG_RE.finditer(stderr)]
    lines = stderr.strip().splitlines()
    if msgs or lines:
        return " ".join((msgs[-1] if msgs else lines[-1]).split())
    if status is None:
        return "no message"
    how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
    return f"no message (runc {how})"


def checkpoint_argv(runc: str, root: Path, container: str, *, images: Path, log_file: Path,
                    page_server: PageServerAddress | None = None, lazy: bool = False,
                    status_fd: int | None = None, tcp_established: bool = False,
                    parent: str | None = None, pre_dump: bool = False,
                    leave_running: bool = False, file_locks: bool = False) -> list[str]:
    """``runc checkpoint`` for a migration (``file_locks``: the container's processes hold
    file locks, host/filelocks.py).

    ``lazy``: the dump serves the memory from here (post-copy). ``leave_running``: runc is
    told ``--leave-running``, so that it never destroys the container when CRIU reports
    success: a lazy dump "succeeds" whenever the destination's lazy-pages daemon closes the
    session in order, which it also does when every page went before the commit, or when
    the restore it served failed (docs/ARCHITECTURE.md, section 10). Only for a container
    whose cgroup the caller froze before CRIU seized it: CRIU lets the tasks go "running"
    into the cgroup it puts back frozen, one copy at a time, until the source decides
    (thawed on a roll-back, ``runc delete`` after the commit). CRIU's configuration file
    cannot say ``leave-stopped`` instead: runc's RPC options win over CRIU_CONFIG_FILE. Not
    with ``tcp_established``: CRIU lifts a left-running dump's network lock at once, and the
    frozen copy's kernel sockets would take the client's bytes meant for the destination.

    ``pre_dump``: one pre-copy iteration (``--pre-dump``: memory only, the container keeps
    running; runc asks CRIU for ``mem_track`` first). ``parent``: the previous pre-dump's
    image directory, relative to ``images`` (``--parent-path``; runc then sets CRIU's
    ``track_mem`` itself).
    """
    if pre_dump and (lazy or status_fd is not None):
        raise RuncError("checkpoint", container, "a pre-dump cannot be lazy")
    argv = [runc, "--root", str(root), "--log", str(log_file), "checkpoint",
            "--image-path", str(images),
            "--work-path", str(images)]
    if pre_dump:
        argv.append("--pre-dump")
    if page_server is not None:
        argv += ["--page-server", f"{page_server.address}:{page_server.port}"]
    if lazy:
        argv.append("--lazy-pages")
    if leave_running:
        if not lazy:
            raise RuncError("checkpoint", container, "only a lazy dump leaves it running")
        argv.append("--leave-running")
    if status_fd is not None:
        argv += ["--status-fd", str(status_fd)]
    if tcp_established:
        argv.append("--tcp-established")
    if parent:
        argv += ["--parent-path", parent]
    if file_locks:
        argv.append("--file-locks")
    if not pre_dump:
        argv.append("--ext-unix-sk")  # datagrams to a name outside it (criu/requests.py)
    return [*argv, container]


def restore_argv(runc: str, root: Path, container: str, *, bundle: Path, images: Path,
                 log_file: Path, pid_file: Path | None = None, lazy: bool = False,
                 tcp_established: bool = False, file_locks: bool = False) -> list[str]:
    """``runc restore --detach``: runc returns once CRIU has restored the container
    (``file_locks``: its images hold file locks, criu/filelocks.py).

    runc's own messages go to ``log_file``: its stdio become the container's (CRIU restores
    the container's stdio pipes from the fds runc holds).
    """
    argv = [runc, "--root", str(root), "--log", str(log_file), "restore", "--detach",
            "--bundle", str(bundle), "--image-path", str(images), "--work-path", str(images)]
    if pid_file is not None:
        argv += ["--pid-file", str(pid_file)]
    if lazy:
        argv.append("--lazy-pages")
    if tcp_established:
        argv.append("--tcp-established")
    if file_locks:
        argv.append("--file-locks")
    argv.append("--ext-unix-sk")  # connects them again by name (criu/requests.py)
    return [*argv, container]


def criu_conf(*, tls: TlsFiles | None = None, serves_pages: bool = False,
              action_script: Path | None = None, leave_stopped: bool = False,
              ghost_limit: int | None = None) -> str:
    """CRIU configuration file text (one option a line, values quoted; ``ghost_limit``:
    runc has no option for it, host/ghosts.py)."""
    lines = ["network-lock nftables"]
    if ghost_limit is not None:
        lines.append(f"ghost-limit {int(ghost_limit)}")
    if tls is not None:
        lines += ["tls", f"tls-cacert {_q(tls.cacert)}", f"tls-cert {_q(tls.cert)}",
                  f"tls-key {_q(tls.key)}"]
        if serves_pages:  # CRIU's server side checks the client's name against --address
            lines.append("tls-no-cn-verify")
    if action_script is not None:
        lines.append(f"action-script {_q(action_script)}")
    if leave_stopped:
        lines.append("leave-stopped")
    return "\n".join(lines) + "\n"


def _q(path: Path) -> str:
    text = str(path)
    if not path.is_absolute() or any(c in text for c in '"\\\n'):
        raise RuncError("config", "", f"unusable path for CRIU's configuration: {text!r}")
    return f'"{text}"'


HOLD_ACTIONS = ("pre-dump", "post-dump")


def hold_script(events: Path, lock: Path, decision: Path, thaw: Path | None = None,
                freeze_lock: Path | None = None) -> str:
    """The action script CRIU runs at each action of a dump under ``runc checkpoint``.

    It reports ``pre-dump`` (freezing starts) and ``post-dump`` (dumped, still frozen) on the
    ``events`` FIFO (opened read-write, so it never blocks), then at post-dump waits for a
    shared lock on ``lock``, which ferryman holds exclusively until it has decided and
    written ``decision``; a ferryman that dies releases the lock without a decision. Any
    answer but "go" fails the script, and CRIU resumes the container where it was. A lazy
    dump (post-copy) goes on to serve its pages whatever post-dump said (CRIU's
    cr_dump_finish): without a "go", ``status-ready`` fails too, which ends the page server
    before it accepts anyone, so that CRIU resumes the container instead of serving a
    refused migration for ever.

    With ``freeze_lock`` it also waits at pre-dump, for ferryman to freeze the container's
    cgroup (then CRIU finds it frozen); a ferryman that dies lets CRIU freeze it itself.

    ``thaw`` is the freezer control file of a cgroup ferryman froze before the dump (v1
    ``freezer.state``, v2 ``cgroup.freeze``). CRIU puts such a cgroup back as it found it,
    frozen, when it resumes the tasks, and a dead ferryman would never thaw it: without a
    "go", a helper thaws it once CRIU has exited.
    """
    e, lk, d = (shlex.quote(str(p)) for p in (events, lock, decision))
    lines = ["#!/bin/sh",
             "# Written by ferryman for one migration; CRIU runs it at every action "
             "(CRIU_CONFIG_FILE).",
             'case "$CRTOOLS_SCRIPT_ACTION" in',
             f'pre-dump|post-dump) echo "$CRTOOLS_SCRIPT_ACTION" 1<>{e} || exit 1 ;;',
             f'status-ready) [ "$(cat {d} 2>/dev/null)" = go ] && exit 0; exit 1 ;;',
             "*) exit 0 ;;",
             "esac"]
    if freeze_lock is not None:
        lines.append(f'[ "$CRTOOLS_SCRIPT_ACTION" = pre-dump ] && '
                     f'{{ flock -s {shlex.quote(str(freeze_lock))} true; exit 0; }}')
    lines += ['[ "$CRTOOLS_SCRIPT_ACTION" = post-dump ] || exit 0',
              f"flock -s {lk} true",
              f'[ "$(cat {d} 2>/dev/null)" = go ] && exit 0']
    if thaw is not None:
        value = "0" if thaw.name == "cgroup.freeze" else "THAWED"
        lines.append(f"(while kill -0 $PPID 2>/dev/null; do sleep 0.05; done; "
                     f"echo {value} > {shlex.quote(str(thaw))}) </dev/null >/dev/null 2>&1 &")
    lines.append("exit 1")
    return "\n".join(lines) + "\n"


class Runc:
    """The runc binary with its state root (``--root``)."""

    def __init__(self, binary: str = "runc", root: Path = DEFAULT_ROOT) -> None:
        self.binary = binary
        self.root = root

    def argv(self, *args: str) -> list[str]:
        """runc with this state root and ``args``."""
        return [self.binary, "--root", str(self.root), *args]

    async def run(self, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv(*args),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, preexec_fn=die_with_parent)
        except FileNotFoundError as exc:
            raise RuncMissing(self.binary) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise RuncError(args[0], args[-1], f"no answer within {timeout:.0f} s") from exc
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def state(self, container: str) -> ContainerState | None:
        """The container's state, or None when runc does not know it."""
        rc, out, err = await self.run("state", check_id(container))
        if rc != 0:
            if "does not exist" in err or "not exist" in err:
                return None
            raise RuncError("state", container, runc_message(err))
        return parse_state(out)

    async def running(self, container: str) -> ContainerState:
        """The state of a running container; NoSuchContainer otherwise."""
        st = await self.state(container)
        if st is None:
            raise NoSuchContainer(container, root=str(self.root))
        if st.status != "running":
            raise NoSuchContainer(container, st.status, root=str(self.root))
        return st

    async def delete(self, container: str) -> None:
        """Kill and forget the container (``runc delete --force``); quiet if it is gone."""
        self.forget_checkpoint_marker(container)
        rc, _, err = await self.run("delete", "--force", check_id(container))
        if rc != 0 and "does not exist" not in err:
            raise RuncError("delete", container, runc_message(err))

    def forget_checkpoint_marker(self, container: str) -> bool:
        """runc marks a container at CRIU's post-dump (``ROOT/ID/checkpoint``) and then never
        destroys it; after a checkpoint that failed (rolled back) the mark must go."""
        marker = self.root / container / "checkpoint"
        try:
            marker.unlink()
        except FileNotFoundError:
            return False
        return True

    def config_of(self, state: ContainerState) -> BundleConfig:
        path = state.bundle / "config.json"
        try:
            text = path.read_text()
        except OSError as exc:
            raise RuncError("config", state.id, f"cannot read {path}: {exc.strerror}") from exc
        return parse_bundle_config(text, state.bundle)
