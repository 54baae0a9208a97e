"""CRIU helper daemons run as our children: the page server (cold/pre-copy destination)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

from ferryman.criu.client import RELAY_FRAMES_ENV, TlsFiles
from ferryman.criu.logs import first_error
from ferryman.criu.pacing import criu_env
from ferryman.errors import CriuError, CriuMissing
from ferryman.host.pages import PAGE_SIZE
from ferryman.host.prctl import die_with_parent

log = logging.getLogger(__name__)


def free_port(address: str) -> int:
    """An unused TCP port on ``address`` (the kernel's choice)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def tls_args(tls: TlsFiles | None) -> list[str]:
    if tls is None:
        return []
    return ["--tls", "--tls-cacert", str(tls.cacert), "--tls-cert", str(tls.cert),
            "--tls-key", str(tls.key)]


class CriuDaemon:
    """A long-running criu subprocess (page-server, lazy-pages) with its log in ``workdir``."""

    def __init__(self, action: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.action = action
        self.proc = proc
        self.log_path = log_path

    @classmethod
    async def spawn(cls, criu_bin: str, action: str, args: list[str], log_path: Path,
                    verbosity: int = 2, *, pass_fds: tuple[int, ...] = (),
                    env: Mapping[str, str] | None = None) -> CriuDaemon:
        argv = [criu_bin, action, *args, "-o", log_path.name, f"-v{verbosity}"]
        log.debug("spawn %s", " ".join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=log_path.parent, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                env=None if env is None else dict(env),
                preexec_fn=die_with_parent, pass_fds=pass_fds)  # never outlive the agent
        except FileNotFoundError as exc:
            raise CriuMissing(f"{criu_bin} not found") from exc
        return cls(action, proc, log_path)

    async def wait(self, timeout: float) -> None:
        """Wait for a clean exit; raises CriuError with the log's reason otherwise."""
        try:
            rc = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError as exc:
            await self.kill()
            raise CriuError(self.action, log_path=str(self.log_path),
                            reason=f"did not finish within {timeout:.0f} s") from exc
        if rc != 0:
            raise CriuError(self.action, log_path=str(self.log_path),
                            reason=first_error(self.log_path) or f"exit status {rc}")

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def start_page_server(criu_bin: str, images_dir: Path, address: str, port: int,
                            tls: TlsFiles | None, *, parent: str | None = None) -> CriuDaemon:
    """``criu page-server`` receiving one dump's pages into ``images_dir``.

    ``parent`` (pre-copy): the previous image set, relative to ``images_dir``; CRIU links it
    as ``parent`` and answers the dump's questions about which pages it already has.
    """
    args = ["--images-dir", str(images_dir), "--address", address, "--port", str(port),
            *tls_args(tls)]
    if parent is not None:
        args += ["--prev-images-dir", parent]
    if tls is not None:
        # CRIU's page server checks the *client's* certificate against its own --address;
        # the CA check stays, the name check would wrongly refuse every source node.
        args.append("--tls-no-cn-verify")
    daemon = await CriuDaemon.spawn(criu_bin, "page-server", args, images_dir / "page-server.log")
    await wait_listening(daemon, address, port)
    return daemon


async def _read_byte(fd: int) -> bytes:
    """One byte from the pipe ``fd`` once it is readable (b"" at its end)."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)
    loop.add_reader(fd, ready)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 1)


async def start_socket_page_server(criu_bin: str, images_dir: Path, sock_fd: int,
                                   timeout: float = 10.0) -> CriuDaemon:
    """``criu page-server --ps-socket`` on a connected socket (ferryman's page relay's;
    no TLS: the relay carries the stream between the nodes in its own), once it is ready to
    serve (``--status-fd``), as ``start_page_server`` waits until it listens: until then
    criu runs its start-up checks, whose helper children, orphaned by a SIGKILL then,
    would hold the socket open and sleep on."""
    ready_r, ready_w = os.pipe()
    try:
        args = ["--images-dir", str(images_dir), "--ps-socket", str(sock_fd),
                "--status-fd", str(ready_w)]
        daemon = await CriuDaemon.spawn(criu_bin, "page-server", args,
                                        images_dir / "page-server.log",
                                        pass_fds=(sock_fd, ready_w))
        os.close(ready_w)
        ready_w = -1
        try:  # a byte once ready; end of file if it exited first
            ready = await asyncio.wait_for(_read_byte(ready_r), timeout)
        except TimeoutError:
            await daemon.kill()
            raise CriuError(daemon.action, log_path=str(daemon.log_path),
                            reason=f"not ready after {timeout:.0f} s") from None
        if not ready:
            await daemon.kill()
            raise CriuError(daemon.action, log_path=str(daemon.log_path),
                            reason=first_error(daemon.log_path) or "exited at start")
        return daemon
    finally:
        os.close(ready_r)
        if ready_w >= 0:
            os.close(ready_w)


async def wait_listening(daemon: CriuDaemon, address: str, port: int,
                         timeout: float = 10.0) -> None:
    """Poll /proc/net/tcp* until ``port`` listens (connecting would consume the server)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    hexport = f":{port:04X}"
    while True:
        if not daemon.running:
            raise CriuError(daemon.action, log_path=str(daemon.log_path),
                            reason=first_error(daemon.log_path) or "exited at start")
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            # /proc reads never block; this poll runs a few times at page-server start.
            with contextlib.suppress(FileNotFoundError), open(table) as fh:  # noqa: ASYNC230
                for line in fh.readlines()[1:]:
                    cols = line.split()
                    if cols[1].endswith(hexport) and cols[3] == "0A":  # LISTEN
                        return
        if loop.time() > deadline:
            await daemon.kill()
            raise CriuError(daemon.action, log_path=str(daemon.log_path),
                            reason=f"not listening on {address}:{port} after {timeout:.0f} s")
        await asyncio.sleep(0.01)


LAZY_SOCKET = "lazy-pages.socket"


async def start_lazy_pages(criu_bin: str, images_dir: Path, *, address: str = "",
                           port: int = 0, tls: TlsFiles | None = None,
                           sock_fd: int | None = None, frames: bool = False,
                           timeout: float = 10.0) -> CriuDaemon:
    """``criu lazy-pages`` fetching pages from the source's page server at address:port,
    or, with ``sock_fd``, over that connected socket (ferryman's page relay's; no TLS: the
    relay carries the stream between the nodes in its own). ``frames``: what comes on
    ``sock_fd`` is the relay's frames, which this criu decodes (``FERRYMAN_RELAY_FRAMES``;
    only a criu whose ``ps_relay_frames`` probe passed knows them).

    Restore connects to it through ``images_dir/lazy-pages.socket``; we wait for that socket.
    """
    if sock_fd is not None:
        args = ["--images-dir", str(images_dir), "--page-server", "--ps-socket", str(sock_fd)]
    else:
        args = ["--images-dir", str(images_dir), "--page-server", "--address", address,
                "--port", str(port), *tls_args(tls)]
    # -v4: the per-task "UFFD transferred pages" summary is a debug message.
    env = criu_env(None, os.environ)
    if frames:
        env[RELAY_FRAMES_ENV] = "1"
    daemon = await CriuDaemon.spawn(criu_bin, "lazy-pages", args, images_dir / "lazy-pages.log",
                                    verbosity=4, env=env,
                                    pass_fds=() if sock_fd is None else (sock_fd,))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (images_dir / LAZY_SOCKET).exists():
        if not daemon.running or loop.time() > deadline:
            await daemon.kill()
            raise CriuError("lazy-pages", log_path=str(daemon.log_path),
                            reason=first_error(daemon.log_path) or "did not start")
        await asyncio.sleep(0.002)
    return daemon


_UFFD_PAGES = re.compile(r"UFFD transferred pages: \((\d+)/(\d+)\)")
_FAULT = re.compile(r"#PF at 0x")
# "(SS.uuuuuu) uffd: PID-N: #PF at 0xADDR" and "... uffd_copy: 0xADDR/LEN" (debug level)
_FAULT_AT = re.compile(r"^\((\d+\.\d+)\) uffd: (\d+)-\d+: #PF at 0x([0-9a-f]+)$", re.M)
_COPY_AT = re.compile(r"^\((\d+\.\d+)\) uffd: (\d+)-\d+: uffd_copy: 0x([0-9a-f]+)/(\d+)$",
                      re.M)
_ZERO_AT = re.compile(r"^\((\d+\.\d+)\) uffd: (\d+)-\d+: zero page at 0x([0-9a-f]+)$", re.M)


def lazy_pages_transferred(log_path: Path) -> tuple[int, int, int]:
    """(pages copied, pages total, page faults served) over all tasks, from the daemon's log.

    CRIU 4.2.1's stats are garbage in lazy mode (docs/ARCHITECTURE.md, "CRIU facts");
    its log is right.
    """
    copied = total = 0
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return 0, 0, 0
    for m in _UFFD_PAGES.finditer(text):
        copied += int(m.group(1))
        total += int(m.group(2))
    return copied, total, len(_FAULT.findall(text))


def lazy_fault_waits(log_path: Path) -> tuple[float, float]:
    """(all fault waits together, the longest one), in ms, from the lazy-pages daemon's log.

    A fault waits from its ``#PF at`` line until the copy (or zero page) that covers its
    address; both are stamped by the daemon's own clock, on the node where the workload runs.
    A fault the log shows no answer to counts until the log's last line.
    """
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return 0.0, 0.0
    events: list[tuple[float, int, str, int, int]] = []
    for m in _FAULT_AT.finditer(text):
        events.append((float(m[1]), m.start(), m[2], int(m[3], 16), 0))
    for m in _COPY_AT.finditer(text):
        events.append((float(m[1]), m.start(), m[2], int(m[3], 16), int(m[4])))
    for m in _ZERO_AT.finditer(text):
        events.append((float(m[1]), m.start(), m[2], int(m[3], 16), PAGE_SIZE))
    events.sort(key=lambda e: e[1])  # log order
    waiting: dict[tuple[str, int], float] = {}
    total = longest = 0.0
    for t, _pos, pid, addr, length in events:
        if not length:
            waiting.setdefault((pid, addr & ~4095), t)
            continue
        for key in [k for k in waiting if k[0] == pid and addr <= k[1] < addr + length]:
            wait = t - waiting.pop(key)
            total += wait
            longest = max(longest, wait)
    end = max((e[0] for e in events), default=0.0)
    for since in waiting.values():
        total += end - since
        longest = max(longest, end - since)
    return total * 1000, longest * 1000
