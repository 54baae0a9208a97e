"""Directory sync with rsync, two-phase: while the workload runs, then again while frozen.

How the bytes travel. The two nodes share no file system (between namespace nodes the path
is on the same host, but the destination must be treated as remote), and no port may be open
to the world (docs/ARCHITECTURE.md, "Who runs where"), so neither an rsync daemon nor ssh is
used. Instead:

- the destination agent opens, for one migration, a TLS listener with the cluster's
  certificates (client certificate required, and it must be the source's node), see
  :mod:`ferryman.fs.server`;
- the source runs the ordinary rsync client with ``--rsh`` set to :mod:`ferryman.fs.tunnel`,
  a small stdlib-only program that connects to that listener with the source's certificate
  and relays rsync's protocol over TLS. rsync hands its "remote shell" the command it wants
  run remotely (``rsync --server FLAGS [OPTIONS] . PATH``); the tunnel sends it first;
- the destination checks that command against :func:`server_argv` (receiver only, known
  options, one of the names planned for this migration) and runs that ``rsync --server``
  into the directory it keeps under that name. The source names what it sends (``bundle``,
  ``rootfs``), never a path on the destination: where the files land is the destination's
  own decision (:mod:`ferryman.agent.bundles`).

So the files go with rsync's own delta algorithm and checksums, memory-to-memory through one
authenticated TLS connection per phase, and rsync's error messages reach the source's rsync
client, which :class:`SyncError` quotes. Phase 1 copies while the workload runs; phase 2, in
the frozen window, only moves what changed since (and is skipped when nothing did,
:mod:`ferryman.fs.snapshot`). Both delete what the source does not have, so that phase 1
alone leaves an exact copy.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ferryman.errors import SyncError
from ferryman.host import deadlink
from ferryman.host.prctl import die_with_parent

log = logging.getLogger(__name__)

TUNNEL = Path(__file__).with_name("tunnel.py")
CLIENT_OPTIONS = ("-aH", "--numeric-ids")  # archive (perms, times, owners, links, devices)
# rsync's server flags for CLIENT_OPTIONS (-a is -rlptgoD, with -H): nothing else, such as
# --keep-dirlinks (K) or --copy-links (L), which follow links on the destination; after
# "e." come the protocol's capability letters
_FLAGS_RE = re.compile(r"-[rlptgoDH]+(?:e\.[A-Za-z]+)?")
_SERVER_LONG_OPTIONS = frozenset({"--delete", "--numeric-ids", "--stats"})
_NAME_RE = re.compile(r"[a-z]{1,32}")
_STATS_RE = re.compile(r"Total bytes sent: ([\d,.]+)")
# CRIU's dump makes a directory /cr-tmpfs.XXXXXX (mkdtemp) in the container's root for a
# moment (criu/mount.c:get_clean_fd) while the frozen sync runs: never part of the container
CRIU_TEMP_DIR = "cr-tmpfs.??????/"
VANISHED = 24  # rsync: "some files vanished before they could be transferred"


@dataclass(frozen=True, slots=True)
class SyncResult:
    path: str
    phase: int
    seconds: float
    bytes_sent: int


def client_argv(src: Path, dest_host: str, *, dest: str, rsh: Sequence[str], delete: bool,
                rsync: str = "rsync") -> list[str]:
    """The rsync client: ``src``'s contents into the destination's directory named ``dest``."""
    path = check_path(str(src))
    argv = [rsync, *CLIENT_OPTIONS, "--stats", f"--exclude={CRIU_TEMP_DIR}", "-e",
            " ".join(rsh)]
    if delete:
        argv.append("--delete")
    return [*argv, f"{path}/", f"{dest_host}:{check_name(dest)}/"]


def tunnel_rsh(port: int, ca: Path, cert: Path, key: Path,
               python: str = sys.executable) -> list[str]:
    """The ``--rsh`` command (no spaces allowed in its words: rsync splits it); its
    connection has the control channel's dead-link bound (host/deadlink.py)."""
    words = [python, "-I", "-S", str(TUNNEL), "--dead-link", deadlink.tunnel_argument(),
             "--port", str(port), "--ca", str(ca), "--cert", str(cert), "--key", str(key)]
    for w in words:
        if not w or any(c.isspace() or c in "'\"\\" for c in w):
            raise SyncError(w, "a path with spaces or quotes cannot be used by rsync's --rsh")
    return words


def server_argv(remote: Sequence[str], allowed: Mapping[str, Path], rsync: str = "rsync"
                ) -> list[str]:
    """The ``rsync --server`` to run for the command a tunnel asked for, or SyncError.

    Accepts only what :func:`client_argv` produces: a receiver (never ``--sender``), one
    short-flags word, known long options, ``.`` and one of the ``allowed`` names, which it
    replaces with the directory the destination keeps under that name.
    """
    words = list(remote)
    if len(words) < 5 or words[0] != "rsync" or words[1] != "--server":
        raise SyncError("?", f"not an rsync receiver command: {' '.join(words)[:200]!r}")
    flags, *opts, dot, path = words[2:]
    if not _FLAGS_RE.fullmatch(flags) or dot != ".":
        raise SyncError(path, f"unexpected rsync server arguments: {flags} {dot}")
    bad = [o for o in opts if o not in _SERVER_LONG_OPTIONS]
    if bad:
        raise SyncError(path, f"rsync option not allowed here: {bad[0]}")
    into = allowed.get(path.rstrip("/"))
    if into is None:
        raise SyncError(path[:200], "this name is not part of the planned migration")
    return [rsync, "--server", flags, *opts, ".", check_path(str(into)) + "/"]


def check_name(name: str) -> str:
    """A sync destination's name (lower-case letters), SyncError otherwise."""
    if not _NAME_RE.fullmatch(name):
        raise SyncError(name, "sync destinations are named, not paths")
    return name


def check_path(path: str) -> str:
    """``path`` without trailing slashes; SyncError unless absolute and free of ``..``."""
    p = path.rstrip("/")
    if not p.startswith("/") or p == "" or "/../" in f"{p}/" or "\0" in p:
        raise SyncError(path, "only absolute paths without '..' can be synced")
    return p


def bytes_sent(stats: str) -> int:
    """rsync's ``--stats`` "Total bytes sent" (0 when absent)."""
    m = _STATS_RE.search(stats)
    if m is None:
        return 0
    try:
        return int(float(m.group(1).replace(",", "")))
    except ValueError:
        return 0


def rsync_reason(stderr: str, status: int) -> str:
    """rsync's own words: its error lines, else its exit status."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("rsync:", "rsync error:", "ferryman"))]
    picked = errors or lines
    text = "; ".join(picked[:3]) if picked else f"rsync exited with status {status}"
    return text[:1000]


async def sync(src: Path, dest_host: str, *, dest: str, rsh: Sequence[str], phase: int,
               rsync: str = "rsync", timeout: float = 600.0) -> SyncResult:
    """Run one rsync phase into the destination's ``dest``; SyncError with rsync's message."""
    argv = client_argv(src, dest_host, dest=dest, rsh=rsh, delete=True, rsync=rsync)
    t0 = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, preexec_fn=die_with_parent)
    except FileNotFoundError as exc:
        raise SyncError(str(src), f"{rsync} is not installed on this node",
                        hint="install Debian's rsync package ('make setup' does)") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        proc.kill()
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise SyncError(str(src), f"rsync did not finish within {timeout:.0f} s") from exc
    if proc.returncode == VANISHED and phase == 2:
        # frozen: only CRIU's own temporaries come and go (the copy is complete otherwise)
        log.warning("sync phase 2 of %s: %s", src,
                    rsync_reason(err.decode(errors="replace"), VANISHED))
    elif proc.returncode != 0:
        assert proc.returncode is not None
        raise SyncError(str(src), rsync_reason(err.decode(errors="replace"), proc.returncode),
                        exit_status=proc.returncode)
    took = time.monotonic() - t0
    sent = bytes_sent(out.decode(errors="replace"))
    log.info("sync phase %d of %s: %d bytes in %.3f s", phase, src, sent, took)
    return SyncResult(str(src), phase, took, sent)
