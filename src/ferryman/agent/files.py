"""Image files over the control channel: send a directory, receive it with checksums."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ferryman import wire
from ferryman.errors import TransferError

# TransferError lives in errors.py (the one tree); importable from here too.
__all__ = ["CHUNK", "EMPTY_SHA256", "LAZY_FIRST", "SET_PREFIX", "SKIP_SUFFIXES", "Receiver",
           "TransferError", "file_messages", "image_files", "image_sets", "remove_images",
           "set_name"]

CHUNK = 1 << 20
SKIP_SUFFIXES = (".log", ".lock")  # logs stay with the report; busy.lock (statelock.py)


SET_PREFIX = "pre-"


def set_name(index: int) -> str:
    """Pre-copy: the directory of pre-dump ``index`` (1-based), inside the migration directory
    on both nodes; the final image set is the migration directory itself."""
    return f"{SET_PREFIX}{index}"


def image_sets(workdir: Path) -> list[Path]:
    """The migration directory and its pre-dump sets."""
    return [workdir, *workdir.glob(f"{SET_PREFIX}*")]


def remove_images(workdir: Path, keep: tuple[str, ...] = ()) -> None:
    """Delete the images of every set (and their ``parent`` links, the lazy-pages socket);
    logs, the set directories and ``keep`` stay."""
    for d in image_sets(workdir):
        for p in d.iterdir():
            if p.is_symlink() or (not p.is_dir() and not p.name.endswith(SKIP_SUFFIXES)
                                  and p.name not in keep):
                p.unlink()


def image_files(directory: Path) -> list[Path]:
    """The files of an image set to ship (logs stay with the source's report): first those
    CRIU's lazy-pages daemon reads when it starts (``LAZY_FIRST``, ``pstree.img`` last of
    them, so that the destination can start it on that file's arrival), then by name."""
    files = [p for p in directory.iterdir()
             if p.is_file() and not p.name.endswith(SKIP_SUFFIXES)]
    return sorted(files, key=lambda p: (_lazy_rank(p.name), p.name))


LAZY_FIRST = ("inventory.img", "ids-", "pstree.img")  # in this order


def _lazy_rank(name: str) -> int:
    for i, prefix in enumerate(LAZY_FIRST):
        if name.startswith(prefix):
            return i
    return len(LAZY_FIRST)


def file_messages(path: Path, name: str | None = None
                  ) -> Iterator[wire.FileChunk | wire.FileEnd]:
    """``path`` as chunks and an end, sent as ``name`` (default: its own name)."""
    name = name or path.name
    digest = hashlib.sha256()
    offset = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            yield wire.FileChunk(name=name, offset=offset, data=chunk)
            offset += len(chunk)
    yield wire.FileEnd(name=name, size=offset, sha256=digest.hexdigest())


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass
class Receiver:
    """Writes chunks into ``directory``, checks order, size and SHA-256 of every file."""

    directory: Path
    _open: dict[str, tuple[int, int, hashlib._Hash]] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)  # of each whole file
    total_bytes: int = 0

    def chunk(self, msg: wire.FileChunk) -> None:
        if msg.name.endswith(SKIP_SUFFIXES):  # logs are never sent: those here are ours
            raise TransferError("name", f"{msg.name}: log files are not images")
        if msg.name in self.done:
            raise TransferError("order", f"{msg.name}: data after its end")
        if msg.name not in self._open:
            if msg.offset != 0:
                raise TransferError("order", f"{msg.name}: first chunk at offset {msg.offset}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            try:
                fd = os.open(self.directory / msg.name, flags, 0o600)
            except FileExistsError as exc:
                raise TransferError("order", f"{msg.name}: sent twice") from exc
            self._open[msg.name] = (fd, 0, hashlib.sha256())
        fd, offset, digest = self._open[msg.name]
        if msg.offset != offset:
            raise TransferError("order", f"{msg.name}: chunk at {msg.offset}, expected {offset}")
        try:
            os.write(fd, msg.data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise TransferError("disk_full", f"no space left on the destination for "
                                    f"{msg.name}") from exc
            raise TransferError("io", f"{msg.name}: {exc.strerror}") from exc
        digest.update(msg.data)
        self._open[msg.name] = (fd, offset + len(msg.data), digest)
        self.total_bytes += len(msg.data)

    def take(self, msg: wire.FileChunk | wire.FileEnd) -> None:
        """A chunk or an end, whichever ``msg`` is."""
        if isinstance(msg, wire.FileChunk):
            self.chunk(msg)
        else:
            self.end(msg)

    def end(self, msg: wire.FileEnd) -> None:
        if msg.name not in self._open:
            if msg.size != 0 or msg.name in self.done:
                raise TransferError("order", f"{msg.name}: end without data")
            self.chunk(wire.FileChunk(name=msg.name, offset=0, data=b""))
        fd, offset, digest = self._open.pop(msg.name)
        os.close(fd)
        if offset != msg.size or digest.hexdigest() != msg.sha256:
            raise TransferError("checksum", f"{msg.name}: size or SHA-256 mismatch")
        self.done[msg.name] = offset
        self.sha256[msg.name] = msg.sha256

    def check_complete(self, file_count: int) -> None:
        if self._open or file_count != len(self.done):
            raise TransferError("order", f"got {len(self.done)} whole files, "
                                f"the source sent {file_count}")

    def sums(self) -> dict[str, tuple[int, str]]:
        """Each whole file's size and SHA-256, as checked on arrival (agent/imageseal.py)."""
        return {name: (size, self.sha256[name]) for name, size in self.done.items()}

    def close(self) -> None:
        for fd, _, _ in self._open.values():
            os.close(fd)
        self._open.clear()
