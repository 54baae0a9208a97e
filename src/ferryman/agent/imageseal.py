"""The destination's seal on the images it holds: size and checksum of each file as it
arrived, checked again right before the restore.

CRIU's page server writes the pages it receives without any check of its own, and the
restore reads them without one either: a page file damaged on this node's disk between its
arrival and the restore would be restored as it is, and the workload run with the damage.
Two ways in, each sealed once:

- files that came through the control channel (``agent/files.py:Receiver``) were already
  checked against the source's SHA-256; that digest is the seal (:meth:`ImageSeal.add`);
- files a page server writes are followed while it writes them (:class:`Follower`, a
  thread reading each ``pages-*``/``pagemap-*`` file behind the writer, from the page
  cache), so that when the page server exits only the last bytes are left to sum. Their
  sum is XXH3-128 (xxhash), not SHA-256: the seal guards against damage (a disk, a stray
  writer), not against root on this node, who could change the agent itself; ZFS's default
  data checksum (fletcher4) and btrfs's (crc32c, xxhash) make the same choice. 1 GiB in
  the page cache, read and summed: XXH3-128 132 ms, zlib's CRC-32 298 ms, SHA-256 671 ms
  (2026-12-05, the test host); the sum is taken twice (on arrival, before the restore), on
  the CPUs the restore needs.

:meth:`ImageSeal.verify` hashes every sealed file again and names those that differ. The
restore overlaps it for the page files (``destination_restore.py``): the tree is restored
stopped and never resumed before the answer.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import xxhash

log = logging.getLogger(__name__)

CHUNK = 1 << 20
POLL_S = 0.005  # how often a follower looks for new bytes when it has caught up
FOLLOWED = ("pages-", "pagemap-")  # what CRIU's page server writes (prefixes of *.img)


def follows(name: str) -> bool:
    """Whether a page server writes ``name`` (the files a :class:`Follower` seals)."""
    return name.startswith(FOLLOWED) and name.endswith(".img")


def is_page_file(name: str) -> bool:
    return name.startswith("pages-") and name.endswith(".img")


SHA256, XXH3 = "sha256", "xxh3_128"
Sum = tuple[int, str]  # size and "ALGORITHM:HEX"


class _Digest(Protocol):
    def update(self, data: memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def _digest(algorithm: str) -> _Digest:
    return xxhash.xxh3_128() if algorithm == XXH3 else hashlib.new(algorithm)


def file_sum(path: Path, algorithm: str) -> Sum:
    """Size and ``algorithm`` sum of ``path``, read in 1 MiB chunks."""
    digest = _digest(algorithm)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    with path.open("rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            size += n
    return size, f"{algorithm}:{digest.hexdigest()}"


def sha256_sums(sums: dict[str, tuple[int, str]]) -> dict[str, Sum]:
    """Sizes and SHA-256 hex digests (the Receiver's) as seals."""
    return {name: (size, f"{SHA256}:{sha}") for name, (size, sha) in sums.items()}


@dataclass
class _Tail:
    fd: int
    size: int = 0
    digest: xxhash.xxh3_128 = field(default_factory=xxhash.xxh3_128)


class Follower:
    """Hashes the files a page server writes into ``directory`` while it writes them.

    CRIU writes each image file from its start to its end (no seek back), so reading every
    file up to its current end, again and again, hashes exactly what was written. Started
    with the page server; :meth:`finish` once it exited cleanly hashes the rest and returns
    the seals; :meth:`close` drops everything (a failed migration).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._tails: dict[str, _Tail] = {}
        self._stop = threading.Event()
        self._closed = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name=f"seal {directory.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buf = bytearray(CHUNK)
        try:
            while not self._stop.is_set():
                if not self._catch_up(buf):
                    self._stop.wait(POLL_S)
            if not self._closed:
                self._catch_up(buf)  # the writer has exited: read each file to its end
        except OSError as exc:
            self._error = exc

    def _catch_up(self, buf: bytearray) -> bool:
        """Read what was written since the last look; whether anything was."""
        view = memoryview(buf)
        progress = False
        for entry in os.scandir(self.directory):
            if entry.name not in self._tails and follows(entry.name) and entry.is_file(
                    follow_symlinks=False):
                fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                self._tails[entry.name] = _Tail(fd)
        for tail in self._tails.values():
            while n := os.readv(tail.fd, [buf]):
                tail.digest.update(view[:n])
                tail.size += n
                progress = True
        return progress

    def _close_fds(self) -> None:
        for tail in self._tails.values():
            os.close(tail.fd)
        self._tails.clear()

    def finish(self) -> dict[str, Sum]:
        """The writer has exited: sum what is left; each file's size and XXH3-128 sum."""
        self._stop.set()
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            return {name: (t.size, f"{XXH3}:{t.digest.hexdigest()}")
                    for name, t in self._tails.items()}
        finally:
            self._close_fds()

    def close(self) -> None:
        """Stop following without a seal (the page server failed or was killed)."""
        self._closed = True
        self._stop.set()
        self._thread.join()
        self._close_fds()


class ImageSeal:
    """Every image file of one migration, by path under its directory: size, sum."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sums: dict[str, Sum] = {}
        self._followers: dict[Path, Follower] = {}

    def add(self, directory: Path, sums: dict[str, Sum]) -> None:
        """Seal files of ``directory`` (the migration's or one of its image sets)."""
        prefix = directory.relative_to(self.workdir)
        for name, sealed in sums.items():
            self.sums[str(prefix / name)] = sealed

    def follow(self, directory: Path) -> None:
        """A page server writes into ``directory`` from now on."""
        self._followers[directory] = Follower(directory)

    def settle(self) -> None:
        """Every page server followed so far exited cleanly: seal what each wrote."""
        followers, self._followers = self._followers, {}
        for directory, follower in followers.items():
            t0 = time.monotonic()
            sums = follower.finish()
            self.add(directory, sums)
            log.info("%d files a page server wrote (%d MiB) sealed; %.0f ms after it exited",
                     len(sums), sum(size for size, _ in sums.values()) >> 20,
                     (time.monotonic() - t0) * 1000)

    def close(self) -> None:
        followers, self._followers = self._followers, {}
        for follower in followers.values():
            follower.close()

    def verify(self, which: Iterable[str] | None = None) -> list[str]:
        """The sealed files (``which`` of them) whose content changed since they arrived,
        each as one phrase; empty when all are as they arrived."""
        bad = []
        t0, total = time.monotonic(), 0
        names = sorted(self.sums if which is None else which)
        for rel in names:
            size, sealed = self.sums[rel]
            total += size
            try:
                now = file_sum(self.workdir / rel, sealed.partition(":")[0])
            except OSError as exc:
                bad.append(f"{rel} ({exc.strerror or exc})")
                continue
            if now[0] != size:
                bad.append(f"{rel} ({now[0]} bytes, {size} arrived)")
            elif now[1] != sealed:
                bad.append(f"{rel} (its {sealed.partition(':')[0].upper()} differs)")
        log.info("%d image files (%d MiB) checked against their seal in %.0f ms: %s",
                 len(names), total >> 20, (time.monotonic() - t0) * 1000,
                 "changed: " + ", ".join(bad) if bad else "as they arrived")
        return bad

    def page_files(self) -> list[str]:
        return [rel for rel in self.sums if is_page_file(Path(rel).name)]

    def other_files(self) -> list[str]:
        return [rel for rel in self.sums if not is_page_file(Path(rel).name)]
