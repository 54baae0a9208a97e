"""Read-only lookups in a bbolt database file (the format of go.etcd.io/bbolt), pure.

Podman 4 keeps its container records in one (``GRAPHROOT/libpod/bolt_state.db``): bucket
``ctr`` → bucket ``<container id>`` → key ``config`` (the container's configuration as JSON,
the object ``podman container checkpoint --export`` writes as ``config.dump``) and bucket
``networks`` (the container's per-network options). Podman offers no command that prints that
configuration without checkpointing the container, so ferryman reads it here; it never writes.

The format, as bbolt lays it out: pages of ``page_size`` bytes; pages 0 and 1 are the two
meta pages (the valid one with the higher transaction id is current) naming the root bucket's
page; a page starts with a 16-byte header (id u64, flags u16, count u16, overflow u32) and
holds ``count`` elements: a branch element (pos u32, ksize u32, child page u64), a leaf
element (flags u32, pos u32, ksize u32, vsize u32), ``pos`` counted from the element itself.
A leaf value flagged as a bucket starts with the bucket header (root page u64, sequence u64);
root 0 means an inline bucket whose page follows the header in the value itself.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

MAGIC = 0xED0CDAED
PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
META = struct.Struct("<IIIIQQQQQQ")  # magic, version, page size, flags, root, seq, freelist,
#                                      pgid, txid, checksum
BRANCH = struct.Struct("<IIQ")  # pos, ksize, pgid
LEAF = struct.Struct("<IIII")  # flags, pos, ksize, vsize
BUCKET = struct.Struct("<QQ")  # root, sequence
BRANCH_PAGE, LEAF_PAGE, META_PAGE = 0x01, 0x02, 0x04
BUCKET_LEAF = 0x01
MAX_DEPTH = 64


class BoltError(ValueError):
    """The file is not a bbolt database, or not one this reader understands."""


class Bucket:
    """A bucket: its root page in the file, or its inline page (``inline`` bytes)."""

    def __init__(self, db: BoltFile, root: int, inline: bytes | None = None) -> None:
        self.db = db
        self.root = root
        self.inline = inline

    def items(self) -> Iterator[tuple[bytes, bytes, bool]]:
        """(key, value, is_bucket) in key order."""
        if self.inline is not None:
            yield from _leaf_items(self.inline, 0)
            return
        yield from self.db.walk(self.root, 0)

    def get(self, key: bytes) -> bytes | None:
        for k, v, is_bucket in self.items():
            if k == key and not is_bucket:
                return v
        return None

    def bucket(self, key: bytes) -> Bucket | None:
        for k, v, is_bucket in self.items():
            if k == key and is_bucket:
                return self.db.open_bucket(v)
        return None


class BoltFile:
    """The bytes of a bbolt file (read whole: podman's is small) and its current root."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        metas = []
        for offset in (0, None):
            meta = self._meta(offset)
            if meta is not None:
                metas.append(meta)
        if not metas:
            raise BoltError("not a bbolt database (no valid meta page)")
        page_size, root, _txid = max(metas, key=lambda m: m[2])
        self.page_size = page_size
        self.root = Bucket(self, root)

    def _meta(self, offset: int | None) -> tuple[int, int, int] | None:
        if offset is None:  # the second meta page sits one page in: its size from the first
            first = self._meta(0)
            if first is None:
                return None
            offset = first[0]
        start = offset + PAGE_HEADER.size
        if len(self.data) < start + META.size:
            return None
        magic, version, page_size, _, root, _, _, _, txid, _ = META.unpack_from(self.data,
                                                                               start)
        if magic != MAGIC or version != 2 or page_size < 512:
            return None
        return page_size, root, txid

    def page(self, pgid: int) -> bytes:
        start = pgid * self.page_size
        if pgid < 2 or start + PAGE_HEADER.size > len(self.data):
            raise BoltError(f"page {pgid} is outside the file")
        _, _, _, overflow = PAGE_HEADER.unpack_from(self.data, start)
        return self.data[start:start + (overflow + 1) * self.page_size]

    def walk(self, pgid: int, depth: int) -> Iterator[tuple[bytes, bytes, bool]]:
        if depth > MAX_DEPTH:
            raise BoltError("bucket tree too deep")
        page = self.page(pgid)
        _, flags, count, _ = PAGE_HEADER.unpack_from(page, 0)
        if flags & LEAF_PAGE:
            yield from _leaf_items(page, 0)
        elif flags & BRANCH_PAGE:
            for i in range(count):
                _, _, child = BRANCH.unpack_from(page, PAGE_HEADER.size + i * BRANCH.size)
                yield from self.walk(child, depth + 1)
        else:
            raise BoltError(f"page {pgid} is neither a branch nor a leaf (flags {flags:#x})")

    def open_bucket(self, value: bytes) -> Bucket:
        if len(value) < BUCKET.size:
            raise BoltError("bucket value too short")
        root, _ = BUCKET.unpack_from(value, 0)
        if root == 0:
            return Bucket(self, 0, value[BUCKET.size:])
        return Bucket(self, root)

    def path(self, *keys: bytes) -> Bucket | None:
        """The bucket at ``keys`` from the root, or None."""
        b: Bucket | None = self.root
        for k in keys:
            if b is None:
                return None
            b = b.bucket(k)
        return b


def _leaf_items(page: bytes, base: int) -> Iterator[tuple[bytes, bytes, bool]]:
    _, flags, count, _ = PAGE_HEADER.unpack_from(page, base)
    if not flags & LEAF_PAGE:
        raise BoltError(f"expected a leaf page (flags {flags:#x})")
    for i in range(count):
        at = base + PAGE_HEADER.size + i * LEAF.size
        eflags, pos, ksize, vsize = LEAF.unpack_from(page, at)
        k0 = at + pos
        if k0 + ksize + vsize > len(page):
            raise BoltError("leaf element outside its page")
        yield (page[k0:k0 + ksize], page[k0 + ksize:k0 + ksize + vsize],
               bool(eflags & BUCKET_LEAF))
