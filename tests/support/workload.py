#!/usr/bin/env python3
"""A migration test workload: memory with a verifiable pattern, a heartbeat, optional dirtying.

Standalone (no ferryman imports) so it runs under any python3. Every page of its buffer holds
an 8-byte sequence number followed by a pattern derived from --seed; the workload keeps the
sequence numbers it wrote in a separate array, so after a migration it can check every page
against its own bookkeeping (a lost, stale or zeroed page is found).

Signals: SIGUSR1 -> verify memory and write a JSON status file; SIGUSR2 -> reset the
longest heartbeat gap. The status file is replaced atomically.

A move to another machine (the kernel's boot_id changed, read at every beat: two machines'
wall clocks can differ by more than the freeze, so the gap alone cannot tell) is noted in the
status: ``moved_at`` is the time of the first beat there, and
``max_gap_here_ms`` the longest gap since whose two beats were both taken there, so both are
on the new machine's own clock (``max_gap_ms`` spans the move, two machines' clocks).

With --children 3 the process forks three children: child 1 writes a counter into a pipe,
child 2 reads it and checks it is gapless, child 3 just holds memory. Each writes its own
status file (STATUS.child1, ...) on SIGUSR1.

With any other --children N the process forks N children that just hold memory
(--mib // N each, at least 1 MiB) and heartbeat, every max(--heartbeat-ms, 10) ms (a tree
of 100 processes beating every millisecond would keep two CPUs busy); each answers SIGUSR1
with its own status file (STATUS.child1 … STATUS.childN).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import hashlib
import json
import mmap
import os
import random
import signal
import struct
import sys
import time

PAGE = 4096
_flags = {"status": False, "reset": False}


def _on_usr1(_sig: int, _frm: object) -> None:
    _flags["status"] = True


def _on_usr2(_sig: int, _frm: object) -> None:
    _flags["reset"] = True


def page_pattern(seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (PAGE // len(block) + 1))[: PAGE - 8]


def _buffer(kind: str, data: bytes) -> bytearray | mmap.mmap:
    """--memory KIND: where the pages live. heap: a bytearray (private anonymous memory);
    thp: a private mapping with MADV_HUGEPAGE (transparent huge pages); shared: a shared
    anonymous mapping; memfd: a shared mapping of a memfd."""
    if kind == "heap":
        return bytearray(data)
    if kind == "thp":
        m = mmap.mmap(-1, len(data), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m.madvise(mmap.MADV_HUGEPAGE)
    elif kind == "shared":
        m = mmap.mmap(-1, len(data), flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    elif kind == "memfd":
        fd = os.memfd_create("workload")
        os.ftruncate(fd, len(data))
        m = mmap.mmap(fd, len(data), flags=mmap.MAP_SHARED)
        os.close(fd)
    else:
        raise SystemExit(f"unknown --memory {kind}")
    m[:] = data
    return m


def random_pages(seed: str, pages: int) -> bytes:
    """--fill random: ``pages`` pages of pseudo-random bytes from ``seed`` (incompressible,
    and the same every time, so the workload can check them), the first 8 of each zero."""
    rng = random.Random(seed)
    data = bytearray(b"".join(rng.randbytes(min(256, pages - i) * PAGE)
                              for i in range(0, pages, 256)))
    for p in range(pages):
        data[p * PAGE : p * PAGE + 8] = bytes(8)
    return bytes(data)


MIXED_RUN = 512  # pages: --fill mixed alternates runs of this many pattern and random pages


def filled_pages(fill: str, seed: str, pages: int) -> bytes:
    """The memory of ``fill``: a pattern page repeated (compressible), random pages
    (incompressible), or runs of each in turn (``mixed``: a stream of both)."""
    pattern = b"\0" * 8 + page_pattern(seed)
    if fill == "pattern":
        return pattern * pages
    data = random_pages(seed, pages)
    if fill == "random":
        return data
    out = bytearray(data)
    for run in range(0, pages, 2 * MIXED_RUN):
        n = min(MIXED_RUN, pages - run)
        out[run * PAGE : (run + n) * PAGE] = pattern * n
    return bytes(out)


class Memory:
    def __init__(self, mib: int, seed: str, kind: str = "heap", fill: str = "pattern") -> None:
        self.pages = mib * 256
        tail = page_pattern(seed)
        self.seed = seed
        self.fill = fill
        data = filled_pages(fill, seed, self.pages)
        self.buf = _buffer(kind, data)
        del data
        self.seq = array.array("Q", bytes(8 * self.pages))
        self.tail = tail
        self.next_page = 0
        self.writes = 0

    def dirty(self, n: int) -> None:
        buf, seq = self.buf, self.seq
        for _ in range(n):
            p = self.next_page
            self.writes += 1
            struct.pack_into("<Q", buf, p * PAGE, self.writes)
            seq[p] = self.writes
            self.next_page = (p * 7919 + 1) % self.pages if self.pages > 1 else 0

    def verify(self) -> int:
        """Number of pages that differ from the bookkeeping."""
        bad = 0
        view = memoryview(self.buf)
        tail = self.tail
        expected = None if self.fill == "pattern" else \
            memoryview(filled_pages(self.fill, self.seed, self.pages))
        for p in range(self.pages):
            off = p * PAGE
            seq_ok = struct.unpack_from("<Q", view, off)[0] == self.seq[p]
            if expected is not None:
                tail = expected[off + 8 : off + PAGE]
            if not seq_ok or view[off + 8 : off + PAGE] != tail:
                bad += 1
        return bad


class Churn:
    """--churn N: N separately mmap()ed 1 MiB blocks, the oldest replaced by a new one every
    ``every`` seconds: mappings created and unmapped while the workload runs (the kernel often
    puts the new one where an old one was), each living N * ``every`` seconds. Every page
    holds its block's serial number and the pattern, so a page restored from a mapping that
    is gone, or missing, shows up in :meth:`verify`."""

    BLOCK = 1 << 20

    def __init__(self, n: int, seed: str, every: float = 0.1) -> None:
        self.tail = page_pattern(seed + "/churn")
        self.every = every
        self.last = time.time()
        self.serial = 0
        self.replaced = 0
        self.blocks: list[tuple[int, mmap.mmap]] = [self._new() for _ in range(n)]

    def _new(self) -> tuple[int, mmap.mmap]:
        self.serial += 1
        m = mmap.mmap(-1, self.BLOCK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        head = struct.pack("<Q", self.serial)
        m.write((head + self.tail) * (self.BLOCK // PAGE))
        return self.serial, m

    def step(self, now: float) -> None:
        if self.blocks and now - self.last >= self.every:
            self.last = now
            _, old = self.blocks.pop(0)
            old.close()  # munmap
            self.blocks.append(self._new())
            self.replaced += 1

    def verify(self) -> int:
        bad = 0
        for serial, m in self.blocks:
            view = memoryview(m)
            for off in range(0, self.BLOCK, PAGE):
                if struct.unpack_from("<Q", view, off)[0] != serial or \
                        view[off + 8 : off + PAGE] != self.tail:
                    bad += 1
            view.release()
        return bad


BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _boot_id() -> str:
    try:
        with open(BOOT_ID) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _start_time() -> int:
    """This process's start time: a restored process has a new one (CRIU cannot keep it)."""
    with open("/proc/self/stat") as fh:
        stat = fh.read()
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def write_status(path: str, status: dict[str, object]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(status, fh)
    os.replace(tmp, path)


def run(args: argparse.Namespace, role: str, status_path: str, mem: Memory,
        pipe_w: int | None = None, pipe_r: int | None = None) -> None:
    interval = args.heartbeat_ms / 1000.0
    churn = Churn(args.churn, args.seed) if args.churn and role == "main" else None
    rate = args.dirty_rate
    # CLOCK_REALTIME, not monotonic: CRIU restores into a time namespace whose monotonic
    # clock resumes from a reading taken during the dump, hiding part of the freeze.
    last = time.time()
    max_gap = 0.0
    node = _boot_id()
    moved_at: float | None = None
    max_gap_here = 0.0
    beats = 0
    carry = 0.0
    sent = received = 0
    pipe_bad = 0
    rbuf = b""
    if pipe_r is not None:
        os.set_blocking(pipe_r, False)

    def status(phase: str) -> dict[str, object]:
        return {"role": role, "phase": phase, "pid": os.getpid(), "beats": beats,
                "max_gap_ms": round(max_gap * 1000, 3), "moved_at": moved_at,
                "max_gap_here_ms": round(max_gap_here * 1000, 3), "pages": mem.pages,
                "writes": mem.writes, "sent": sent, "received": received, "pipe_bad": pipe_bad,
                "time": time.time(), "churned": churn.replaced if churn else 0}

    def verify() -> int:
        return mem.verify() + (churn.verify() if churn else 0)

    beat_file = args.beat_file if role == "main" else None
    # --log-file: a line appended every beat (an access log: its size grows); --write-file:
    # the beat count rewritten in place every beat (a heartbeat file: its mtime moves)
    log = open(args.log_file, "a") if args.log_file and role == "main" else None  # noqa: SIM115
    inplace = os.open(args.write_file, os.O_RDWR | os.O_CREAT, 0o644) \
        if args.write_file and role == "main" else None
    st = status("ready")
    st["bad_pages"] = verify()
    write_status(status_path, st)
    while True:
        time.sleep(interval)
        now = time.time()
        gap = now - last
        last = now
        beats += 1
        max_gap = max(max_gap, gap)
        here = _boot_id()  # every beat: the gap spans two clocks, which may disagree
        if here != node:  # this gap began on another machine
            node, moved_at, max_gap_here = here, now, 0.0
        else:
            max_gap_here = max(max_gap_here, gap)
        if rate:
            carry += rate * gap
            n = int(carry)
            carry -= n
            mem.dirty(n)
        if churn is not None:
            churn.step(now)
        if pipe_w is not None:
            sent += 1
            os.write(pipe_w, struct.pack("<Q", sent))
        if pipe_r is not None:
            with contextlib.suppress(BlockingIOError):
                rbuf += os.read(pipe_r, 65536)
            while len(rbuf) >= 8:
                (v,) = struct.unpack_from("<Q", rbuf)
                rbuf = rbuf[8:]
                received += 1
                if v != received:
                    pipe_bad += 1
                    received = v
        if log is not None:
            log.write(f"beat {beats} pid {os.getpid()}\n")
            log.flush()
        if inplace is not None:
            os.pwrite(inplace, f"{beats:012d}\n".encode(), 0)
        if beat_file and beats % 20 == 0:
            # read each time: a restored process has a new start time, its memory the old one
            write_status(beat_file, {"beats": beats, "start_time": _start_time(),
                                     "writes": mem.writes})
        if _flags["reset"]:
            _flags["reset"] = False
            max_gap = max_gap_here = 0.0
        if _flags["status"]:
            _flags["status"] = False
            st = status("running")
            st["bad_pages"] = verify()
            write_status(status_path, st)
            last = time.time()  # verification time is not a migration gap


def fork_holders(args: argparse.Namespace) -> None:
    """--children N (N != 3): N children that hold memory and heartbeat, nothing else."""
    n = args.children
    child_args = argparse.Namespace(**vars(args))
    child_args.heartbeat_ms = max(args.heartbeat_ms, 10.0)
    for i in range(1, n + 1):
        if os.fork() == 0:
            mem = Memory(max(1, args.mib // max(n, 1)), f"{args.seed}/child{i}")
            run(child_args, f"child{i}", f"{args.status}.child{i}", mem)
            os._exit(0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--seed", default="ferryman")
    ap.add_argument("--status", required=True)
    ap.add_argument("--heartbeat-ms", type=float, default=1.0)
    ap.add_argument("--dirty-rate", type=float, default=0.0, help="pages per second")
    ap.add_argument("--children", type=int, default=0, metavar="N",
                    help="3: pipe writer, pipe reader, memory holder; other N: memory holders")
    ap.add_argument("--memory", default="heap", choices=("heap", "thp", "shared", "memfd"),
                    help="where the main process's pages live (default heap)")
    ap.add_argument("--fill", default="pattern", choices=("pattern", "random", "mixed"),
                    help="the main process's pages: a repeated pattern (compresses well), "
                         "pseudo-random bytes (incompressible) or runs of each in turn; "
                         "default pattern")
    ap.add_argument("--churn", type=int, default=0, metavar="N",
                    help="N mmap()ed 1 MiB blocks, the oldest replaced every 100 ms")
    ap.add_argument("--beat-file", help="write the heartbeat count here every 20 beats")
    ap.add_argument("--hold-file", help="keep this file open (restore needs it to exist)")
    ap.add_argument("--log-file", help="append a line here every beat")
    ap.add_argument("--write-file", help="rewrite the beat count in place here every beat")
    args = ap.parse_args()
    held = open(args.hold_file) if args.hold_file else None  # noqa: SIM115
    signal.signal(signal.SIGUSR1, _on_usr1)
    signal.signal(signal.SIGUSR2, _on_usr2)
    if args.children < 0:
        ap.error("--children must be 0 or more")
    if args.children == 3:
        r, w = os.pipe()
        kids = []
        for i in (1, 2, 3):
            pid = os.fork()
            if pid == 0:
                mem = Memory(max(1, args.mib // 4), f"{args.seed}/child{i}")
                if i == 1:
                    os.close(r)
                    run(args, f"child{i}", f"{args.status}.child{i}", mem, pipe_w=w)
                elif i == 2:
                    os.close(w)
                    run(args, f"child{i}", f"{args.status}.child{i}", mem, pipe_r=r)
                else:
                    os.close(r)
                    os.close(w)
                    run(args, f"child{i}", f"{args.status}.child{i}", mem)
                os._exit(0)
            kids.append(pid)
        os.close(r)
        os.close(w)
    elif args.children:
        fork_holders(args)
    run(args, "main", args.status, Memory(args.mib, args.seed, args.memory, args.fill))
    if held is not None:
        held.close()


if __name__ == "__main__":
    sys.exit(main())
