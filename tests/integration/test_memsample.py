"""The --compress auto sample of a real process: only the pages CRIU would dump."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ferryman.agent.compression import lz4_rate
from ferryman.host import memsample

# 256 MiB reserved, one page in 16 written with random bytes (a JVM heap, sparsely used)
CHILD = """
import mmap, os, sys
m = mmap.mmap(-1, 256 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for off in range(0, 256 << 20, 16 * 4096):
    m[off:off + 4096] = os.urandom(4096)
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.read()
"""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_sparse_heap_is_sampled_where_it_was_written() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        rss = _rss_kib(child.pid)
        pieces = memsample.sample([child.pid])
        time.sleep(0.05)
        assert _rss_kib(child.pid) - rss < 1024  # reading faulted nothing in
        sampled = lz4_rate(pieces)
        assert sampled is not None
        # What the dump's pages compress as: every page in memory, read whole.
        ranges = memsample.writable_private(Path(f"/proc/{child.pid}/maps").read_text())
        dumped = memsample.in_memory(Path(f"/proc/{child.pid}/pagemap"), ranges)
        with open(f"/proc/{child.pid}/mem", "rb", buffering=0) as fh:
            everything = []
            for lo, hi in dumped:
                fh.seek(lo)
                everything.append(fh.read(hi - lo))
        truth = lz4_rate(everything)
        assert truth is not None
        assert truth[0] < 2.5  # 16 MiB random, a few MiB of Python
        # Over whole mappings (the old sample), 15 of 16 pages of the heap read as zeros.
        whole = lz4_rate(memsample.sample([child.pid], pagemap=False))
        assert whole is not None
        assert whole[0] > 2 * truth[0], (whole, truth)
        assert abs(sampled[0] - truth[0]) < 0.25 * truth[0], (sampled, truth)
    finally:
        child.kill()
        child.wait()
