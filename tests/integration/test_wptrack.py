"""The uffd-wp dirty tracker on real processes and the real kernel (issue 15).

No migration here: the tracker (ferryman.host.wptrack) against a running workload, with the
kernel's PAGEMAP_SCAN as the judge, and CRIU's own pre-dumps for what CRIU makes of it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.criu.client import Criu
from ferryman.criu.rpc import HAS_TRACK_MEM_UFFD
from ferryman.criu.stats import DUMP_STATS, read_stats
from ferryman.host import inject, uffd, wptrack
from ferryman.host.wptrack import TrackerUnavailable, WriteTracker
from tests.integration.conftest import PY, Cluster
from tests.support.workloads import Workload, alive

TASK_END = 0x7FFFFFFFF000
WRITTEN = uffd.PAGE_IS_WRITTEN

pytestmark = pytest.mark.skipif(not wptrack.kernel_supports(),
                                reason="this kernel has no userfaultfd async write-protect")


def written_pages(pid: int) -> int:
    fd = os.open(inject.thread_dir(pid) / "pagemap", os.O_RDONLY)
    try:
        return uffd.count_pages(uffd.scan(fd, 0, TASK_END, category_mask=WRITTEN
                                          | uffd.PAGE_IS_PRESENT, return_mask=WRITTEN))
    finally:
        os.close(fd)


def protect_written(pid: int) -> None:
    """What CRIU does at the end of a dump (the tree frozen): protect the written pages."""
    fd = os.open(inject.thread_dir(pid) / "pagemap", os.O_RDONLY)
    try:
        uffd.scan(fd, 0, TASK_END, category_mask=WRITTEN, return_mask=WRITTEN,
                  flags=uffd.PM_SCAN_WP_MATCHING)
    finally:
        os.close(fd)


@pytest.fixture
def writer(cluster: Cluster) -> Iterator[Workload]:
    w = cluster.workload(mib=64, seed="wptrack", dirty_rate=200)
    try:
        yield w
    finally:
        w.kill()


def test_the_workload_holds_no_userfaultfd_and_its_writes_are_seen(writer: Workload) -> None:
    t = WriteTracker()
    try:
        stats = t.arm([writer.pid])
        assert stats.new_processes == 1
        assert stats.new_mappings > 0
        assert not wptrack.holds_userfaultfd(writer.pid)  # the agent has it, not CRIU's dumpee
        present = written_pages(writer.pid)
        assert present >= 64 * 256  # registered, nothing protected yet: all of it "written"
        protect_written(writer.pid)
        time.sleep(0.5)  # 200 pages/s
        seen = written_pages(writer.pid)
        assert 50 <= seen < present // 10, seen
        assert t.arm([writer.pid]).new_processes == 0  # armed twice: the same descriptor
    finally:
        t.close()
    assert writer.status()["bad_pages"] == 0


def test_the_holder_dying_leaves_the_workload_running_untouched(writer: Workload,
                                                                tmp_path: Path) -> None:
    """An agent that dies with the descriptors: the kernel drops every protection."""
    ready = tmp_path / "ready"
    holder = subprocess.Popen([PY, "-c", (
        "import sys, time, pathlib\n"
        "from ferryman.host.wptrack import WriteTracker\n"
        f"WriteTracker().arm([{writer.pid}])\n"
        f"pathlib.Path({str(ready)!r}).write_text('1')\n"
        "time.sleep(600)\n")])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert holder.poll() is None, "the holder failed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        protect_written(writer.pid)
        assert written_pages(writer.pid) < 64 * 256 // 10
        before = writer.status()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        time.sleep(0.2)
        # unregistered: every present page reads "written" again, nothing stays protected
        assert written_pages(writer.pid) >= 64 * 256
        after = writer.status()
        assert after["bad_pages"] == 0
        assert int(after["writes"]) > int(before["writes"])  # type: ignore[call-overload]
        assert alive(writer.pid)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_workload_with_its_own_userfaultfd_is_refused(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", (
        "import ctypes, os, pathlib, time\n"
        "fd = ctypes.CDLL(None, use_errno=True).syscall(323, os.O_CLOEXEC | 1)\n"
        "assert fd >= 0, ctypes.get_errno()\n"
        f"pathlib.Path({str(ready)!r}).write_text(str(fd))\n"
        "time.sleep(600)\n")])
    try:
        while not ready.exists():
            assert proc.poll() is None
            time.sleep(0.02)
        assert wptrack.holds_userfaultfd(proc.pid)
        t = WriteTracker()
        with pytest.raises(TrackerUnavailable) as err:
            t.arm([proc.pid])
        assert "uses userfaultfd itself" in err.value.message
        assert "criu#2021" in err.value.message
        t.close()
        assert proc.poll() is None  # untouched
    finally:
        proc.kill()
        proc.wait()


FORKER = r"""
import mmap, os, pathlib, signal, sys, time
base = pathlib.Path(sys.argv[1])
def grab(mib, fill):
    m = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.write(bytes([fill]) * (mib << 20))
    return m
keep = [grab(16, 1)]
def on_usr1(*_):  # fork a child that holds 8 MiB of its own, writes its PID
    pid = os.fork()
    if pid == 0:
        keep.append(grab(8, 2))
        (base / "child").write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)
def on_usr2(*_):  # a new 4 MiB mapping, written
    keep.append(grab(4, 3))
    (base / "mapped").write_text("1")
def on_hup(*_):  # drop the first MiB: it reads as zeroes from now on
    keep[0].madvise(mmap.MADV_DONTNEED, 0, 1 << 20)
    (base / "dropped").write_text("1")
signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGUSR2, on_usr2)
signal.signal(signal.SIGHUP, on_hup)
(base / "ready").write_text("1")
while True:
    time.sleep(0.05)
"""


def _wait_file(path: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert proc.poll() is None
        assert time.monotonic() < deadline, path
        time.sleep(0.02)
    return path.read_text()


@pytest.mark.skipif(not HAS_TRACK_MEM_UFFD, reason="criu lacks the uffd-track-mem patch")
def test_criu_dumps_new_mappings_and_forked_children_whole(tmp_path: Path) -> None:
    """Pre-dumps with --track-mem-uffd: unchanged memory is left to the parent images; a
    mapping created and a child forked after the tracker registered everything are dumped
    whole (unknown = dirty) until the tracker registers them."""
    proc = subprocess.Popen([sys.executable, "-c", FORKER, str(tmp_path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True)
    criu = Criu()
    t = WriteTracker()
    child = 0

    done = [0]

    def pre_dump() -> dict[str, int]:
        done[0] += 1
        n = done[0]
        d = tmp_path / f"pre-{n}"
        d.mkdir()
        asyncio.run(criu.dump(proc.pid, d, pre_dump=True, track_mem_uffd=True,
                              parent=f"../pre-{n - 1}" if n > 1 else None,
                              log_file="pre-dump.log"))
        return read_stats(d / DUMP_STATS)

    try:
        _wait_file(tmp_path / "ready", proc)
        pids = [proc.pid]
        t.arm(pids)
        first = pre_dump()
        assert first["pages_written"] >= 16 * 256
        quiet = pre_dump()
        assert quiet["pages_written"] < 2048, quiet  # the interpreter's own (THP: 512 a write)
        assert quiet["pages_skipped_parent"] >= 16 * 256
        proc.send_signal(signal.SIGUSR2)  # a new mapping, not registered
        _wait_file(tmp_path / "mapped", proc)
        grown = pre_dump()
        assert grown["pages_written"] >= 4 * 256
        t.arm(pids)  # registers it, unprotected: dumped once more, then protected
        pre_dump()
        settled = pre_dump()
        assert settled["pages_written"] < 2048, settled
        # Dropped pages read as zeroes: they must not be left to the parent images (stale
        # there). Anonymous ones are simply gone (no uffd-wp marker stays for them): not in
        # this dump at all. The pages left in the parent can only shrink by the drop and
        # the writes, and grow by what the previous dump wrote.
        proc.send_signal(signal.SIGHUP)
        _wait_file(tmp_path / "dropped", proc)
        dropped = pre_dump()
        assert dropped["pages_skipped_parent"] <= settled["pages_skipped_parent"] \
            + settled["pages_written"] - 256, (settled, dropped)
        proc.send_signal(signal.SIGUSR1)  # fork: the child's copy is not registered
        child = int(_wait_file(tmp_path / "child", proc))
        forked = pre_dump()
        assert forked["pages_written"] >= (16 + 8) * 256 + quiet["pages_written"] // 2, forked
        t.arm([proc.pid, child])
        assert t.statistics()["processes"] == 2
        pre_dump()
        calm = pre_dump()
        assert calm["pages_written"] < 4096, calm
        print("pages written:", {k: v["pages_written"] for k, v in (
            ("first", first), ("quiet", quiet), ("new mapping", grown), ("settled", settled),
            ("dropped", dropped), ("forked", forked), ("calm", calm))})
    finally:
        t.close()
        for p in (child, proc.pid):
            if p:
                os.kill(p, signal.SIGKILL)
        proc.wait()



SPARSE = r"""
import mmap, pathlib, sys, time
m = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
for off in range(0, 64 << 20, 2 << 20):  # one page per 2 MiB: a page table each, 511 holes
    m[off] = 1
pathlib.Path(sys.argv[1]).write_text("1")
while True:
    time.sleep(0.05)
"""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.skipif(not HAS_TRACK_MEM_UFFD, reason="criu lacks the uffd-track-mem patch")
def test_pre_dumps_leave_the_holes_of_a_sparse_mapping_alone(tmp_path: Path) -> None:
    """A 64 MiB mapping with one page written in every 2 MiB: 32 pages, 32 page tables,
    16352 holes in them. CRIU protects what it dumped; were the holes protected too (the
    kernel's exclusive-WP fast path does that), each would turn into a uffd-wp marker that
    reads as a swapped page, and every later dump would send it as zeroes (and populate it:
    in the source, and on the restore) -- 64 MiB for 128 KiB of data."""
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", SPARSE, str(ready)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            start_new_session=True)
    criu = Criu()
    t = WriteTracker()

    def pre_dump(n: int) -> dict[str, int]:
        d = tmp_path / f"pre-{n}"
        d.mkdir()
        asyncio.run(criu.dump(proc.pid, d, pre_dump=True, track_mem_uffd=True,
                              parent=f"../pre-{n - 1}" if n > 1 else None,
                              log_file="pre-dump.log"))
        return read_stats(d / DUMP_STATS)

    try:
        _wait_file(ready, proc)
        t.arm([proc.pid])
        first = pre_dump(1)
        rss = _rss_kib(proc.pid)
        second = pre_dump(2)
        third = pre_dump(3)
        assert second["pages_written"] < 1024, second  # the interpreter's own, not 16352 holes
        assert third["pages_written"] < 1024, third
        assert second["pages_scanned"] < first["pages_scanned"] + 1024, (first, second)
        assert _rss_kib(proc.pid) < rss + 4096  # the holes were not populated
        print("pages written:", [s["pages_written"] for s in (first, second, third)])
    finally:
        t.close()
        proc.kill()
        proc.wait()


ZOMBIE_PARENT = r"""
import os, sys, time
pid = os.fork()
if pid == 0:
    os._exit(0)
print(pid, flush=True)  # never reaped: a zombie until this process ends
while True:
    time.sleep(0.05)
"""


def test_a_zombie_in_the_tree_is_left_out() -> None:
    """A zombie has no memory left (CRIU dumps it without any): the tracker skips it, where
    it used to refuse the whole tree (zdtm's zombie00 and sigpending, pre-copy)."""
    proc = subprocess.Popen([sys.executable, "-c", ZOMBIE_PARENT], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, start_new_session=True)
    t = WriteTracker()
    try:
        assert proc.stdout is not None
        kid = int(proc.stdout.readline())
        deadline = time.monotonic() + 10
        while not wptrack.zombie(kid):
            assert time.monotonic() < deadline, "the child did not turn into a zombie"
            time.sleep(0.02)
        assert not wptrack.zombie(proc.pid)
        stats = t.arm([proc.pid, kid])
        assert stats.processes == 1
        assert t.arm([proc.pid, kid]).processes == 1
        assert wptrack.probe_dirty_rate([proc.pid, kid], 0.1) >= 0
    finally:
        t.close()
        proc.kill()
        proc.wait()


def test_the_dirty_rate_probe_sees_the_workloads_writes(cluster: Cluster) -> None:
    """--mode auto's half-second probe, by uffd-wp where there is no soft-dirty."""
    w = cluster.workload(mib=64, seed="wptrack-rate", dirty_rate=1000)
    try:
        rate = wptrack.probe_dirty_rate([w.pid])
        assert 500 <= rate < 20000, rate  # 1,000 pages/s and the interpreter's own writes
        assert not wptrack.holds_userfaultfd(w.pid)
        assert written_pages(w.pid) >= 64 * 256  # released: nothing stays protected
        assert w.status()["bad_pages"] == 0
    finally:
        w.kill()


SECCOMP_ALLOW_ALL = r"""
import ctypes, pathlib, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
insn = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("<HBBI", 0x06, 0, 0, 0x7FFF0000))
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(1, ctypes.addressof(insn))
assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
pathlib.Path(sys.argv[1]).write_text("1")
while True:
    time.sleep(0.05)
"""


def test_a_workload_under_a_seccomp_filter_is_left_alone(tmp_path: Path) -> None:
    """A filter could kill the workload for calling userfaultfd(): never try."""
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", SECCOMP_ALLOW_ALL, str(ready)])
    try:
        _wait_file(ready, proc)
        assert wptrack.seccomp_filtered(proc.pid)
        t = WriteTracker()
        with pytest.raises(TrackerUnavailable) as err:
            t.arm([proc.pid])
        assert "seccomp filter" in err.value.message
        t.close()
        time.sleep(0.1)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


SIGNALLED = r"""
import os, pathlib, signal, sys, time
got = [0]
def on_alarm(*_):
    got[0] += 1
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
pathlib.Path(sys.argv[1]).write_text("1")
while True:
    time.sleep(0.01)  # interrupted and restarted by the alarms
    tmp = pathlib.Path(sys.argv[2] + ".tmp")
    tmp.write_text(str(got[0]))
    os.replace(tmp, sys.argv[2])
"""


def test_injection_into_a_thread_taking_signals_loses_nothing(tmp_path: Path) -> None:
    """A SIGALRM every 0.5 ms: the injections (armed 30 times) hold back the signals that
    arrive and deliver them at the detach; the workload keeps counting, sleeping, running."""
    ready, count = tmp_path / "ready", tmp_path / "count"
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED, str(ready), str(count)])
    try:
        _wait_file(ready, proc)
        for _ in range(30):
            t = WriteTracker()
            assert t.arm([proc.pid]).new_processes == 1
            t.close()
            assert not wptrack.holds_userfaultfd(proc.pid)
        before = int(count.read_text())
        time.sleep(0.3)
        assert proc.poll() is None
        assert int(count.read_text()) > before + 100  # alarms still arrive, 2,000/s
    finally:
        proc.kill()
        proc.wait()


FLOODED = r"""
import os, pathlib, signal, sys, time
got = [0]
def on_usr1(*_):
    got[0] += 1
signal.signal(signal.SIGUSR1, on_usr1)
pathlib.Path(sys.argv[1]).write_text("1")
while True:
    time.sleep(0.01)
    tmp = pathlib.Path(sys.argv[2] + ".tmp")
    tmp.write_text(str(got[0]))
    os.replace(tmp, sys.argv[2])
"""


def test_injection_into_a_thread_flooded_with_signals_runs_every_time(tmp_path: Path) -> None:
    """Three senders kill(SIGUSR1) the workload back to back, so a signal is pending at
    every ptrace stop: the injected call still runs all 100 times (the signals are blocked
    while ferryman holds the thread; stop-counting gave up on 30 of 100) and the workload
    goes on taking them."""
    ready, count = tmp_path / "ready", tmp_path / "count"
    proc = subprocess.Popen([sys.executable, "-c", FLOODED, str(ready), str(count)])
    senders: list[subprocess.Popen[bytes]] = []
    try:
        _wait_file(ready, proc)
        flood = f"import os, signal\nwhile True: os.kill({proc.pid}, signal.SIGUSR1)"
        senders = [subprocess.Popen([sys.executable, "-c", flood]) for _ in range(3)]
        before = int(_wait_file(count, proc))
        for _ in range(100):
            fd = inject.open_fd_in(proc.pid, uffd.NR_USERFAULTFD, os.O_CLOEXEC)
            os.close(fd)
        assert not wptrack.holds_userfaultfd(proc.pid)
        deadline = time.monotonic() + 30  # the senders take the CPUs: it counts when it can
        while int(count.read_text()) <= before:
            assert proc.poll() is None
            assert time.monotonic() < deadline, "the workload took no signal after the flood"
            time.sleep(0.05)
        assert proc.poll() is None
    finally:
        for s in senders:
            s.kill()
            s.wait()
        proc.kill()
        proc.wait()


ZOMBIE_LEADER_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void *run(void *arg) {
    char *m = malloc(8 << 20);
    for (unsigned long n = 0;; n++) {
        m[(n % 2048) * 4096] = (char)n;
        if (n % 2048 == 0) usleep(1000);
    }
    return arg;
}
int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, run, NULL);
    printf("ready\n"); fflush(stdout);
    pthread_exit(NULL);  /* the leader exits; the process runs on in its other thread */
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_a_process_whose_main_thread_exited_is_tracked_through_another(
        tmp_path: Path) -> None:
    """A zombie leader never stops for ptrace: the call runs in a live thread."""
    (tmp_path / "z.c").write_text(ZOMBIE_LEADER_C)
    subprocess.run(["cc", "-O1", "-pthread", "-o", str(tmp_path / "z"), str(tmp_path / "z.c")],
                   check=True)
    proc = subprocess.Popen([str(tmp_path / "z")], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(0.1)
        t = WriteTracker()
        try:
            assert t.arm([proc.pid]).new_processes == 1
            protect_written(proc.pid)
            time.sleep(0.2)
            assert 0 < written_pages(proc.pid) < 8 * 256 + 1024
        finally:
            t.close()
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
