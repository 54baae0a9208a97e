"""The pre-flight rules, one by one: facts in, rows out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ferryman.host.inspect import FileRef, FileStat, WorkloadFacts
from ferryman.host.netinfo import InetSocket
from ferryman.migration import checks
from ferryman.migration.checks import DestinationFacts, NodeFacts
from ferryman.migration.query import CheckQuery
from ferryman.migration.verdict import ALL_MODES, LAZY_MODES, Row, Status, merge

P, W, F = Status.PASS, Status.WARN, Status.FAIL
MiB = 1 << 20
ALL_FEATURES = {"mem_track": True, "lazy_pages": True, "lazy_pipes": True,
                "network_lock": True, "time_ns": True}


def reg(path: str, kind: str = "fd", size: int = 10, mtime: int = 5) -> FileRef:
    return FileRef(path, kind, FileStat("f", size, mtime))


def workload(**changes: object) -> WorkloadFacts:
    w = WorkloadFacts(pid=100, comm="app", processes=2, ids=(100, 101, 102), own_pid_ns=False,
                      own_net_ns=False, own_time_ns=False, rss_bytes=256 * MiB,
                      files=(reg("/usr/bin/app", "exe"), FileRef("/srv", "cwd",
                                                                 FileStat("d", 0, 1))),
                      sockets=())
    return replace(w, **changes)  # type: ignore[arg-type]


def listener(ip: str = "0.0.0.0", port: int = 80, proto: str = "tcp") -> InetSocket:
    return InetSocket(proto, ip, port, "0.0.0.0", 0, "LISTEN" if proto == "tcp" else "BOUND")


def dest(**changes: object) -> DestinationFacts:
    d = DestinationFacts(
        criu=NodeFacts("b", "4.2.1", ALL_FEATURES), cpu_problem=None, taken_ids=(),
        taken_ptys=(),
        networks=frozenset({"127.0.0.0/8", "10.0.0.2/32"}), bound=(),
        files={"/usr/bin/app": FileStat("f", 10, 5), "/srv": FileStat("d", 0, 99)},
        memory_available=4 << 30, disk_free=100 << 30)
    return replace(d, **changes)  # type: ignore[arg-type]


def by_check(rows: list[Row]) -> dict[str, Row]:
    return {r.check: r for r in rows}


def test_a_healthy_destination_passes_everything() -> None:
    rows = checks.destination_rows(CheckQuery(workload()), dest(), "a")
    assert {r.status for r in rows} == {P}
    assert {r.side for r in rows} == {"destination"}


@pytest.mark.parametrize(("src", "dst", "status"), [
    ("4.2.1", "4.2.1", P), ("4.2.0", "4.2.1", P), ("4.1.9", "4.3", P),
    ("4.2.1", "4.2.0", W), ("4.2", "4.1.1", W), ("4.2.1", "5.0", F), ("3.17", "4.2.1", F),
    ("", "4.2.1", W), ("x", "y", W),
])
def test_criu_versions(src: str, dst: str, status: Status) -> None:
    assert checks.criu_row(src, dst, "b").status is status


def test_kernel_features_decide_their_modes() -> None:
    w = workload()
    missing = dict.fromkeys(ALL_FEATURES, False)
    src = by_check(checks.kernel_rows("source", "a", missing, w))
    assert src["kernel.dirty-tracking"].modes == frozenset({"precopy", "hybrid"})
    assert src["kernel.dirty-tracking"].status is F
    assert src["kernel.userfaultfd"].modes == LAZY_MODES
    assert "fs.pipe-max-size=4194304' on a" in src["kernel.pipe-size"].fix
    assert src["kernel.network-lock"].status is P  # no sockets: not needed
    assert "kernel.time-ns" not in src
    dst = by_check(checks.kernel_rows("destination", "b", missing, w))
    assert dst["kernel.dirty-tracking"].status is P  # only needed on the source
    assert dst["kernel.userfaultfd"].status is F
    assert dst["kernel.time-ns"].status is W
    timens = checks.kernel_rows("destination", "b", missing, replace(w, own_time_ns=True))
    assert by_check(timens)["kernel.time-ns"].status is F
    present = by_check(checks.kernel_rows("destination", "b", ALL_FEATURES, w))
    assert {r.status for r in present.values()} == {P}


@pytest.mark.parametrize("w", [workload(sockets=(listener(),)), workload(own_net_ns=True)])
def test_network_lock_needed_with_sockets_or_own_netns(w: WorkloadFacts) -> None:
    rows = by_check(checks.kernel_rows("destination", "b", {"network_lock": False}, w))
    assert rows["kernel.network-lock"].status is F
    assert rows["kernel.network-lock"].modes == ALL_MODES


def test_missing_features_count_as_missing() -> None:
    rows = by_check(checks.kernel_rows("source", "a", {}, workload()))
    assert rows["kernel.userfaultfd"].status is F


def test_cpu() -> None:
    assert checks.cpu_row(None, "a", "b").status is P
    row = checks.cpu_row("x86: avx512 missing", "a", "b")
    assert row.status is F
    assert "avx512" in row.detail


def test_pids() -> None:
    w = workload()
    assert checks.pid_row(w, (), 0, "b").status is P
    taken = checks.pid_row(w, (101, 102), 0, "b")
    assert taken.status is F
    assert "101, 102 (2 of 3)" in taken.detail
    assert checks.pid_row(w, (), 5, "b").status is W
    assert checks.pid_row(replace(w, own_pid_ns=True), (101,), 0, "b").status is P


def test_many_taken_pids_are_abbreviated() -> None:
    w = workload(ids=tuple(range(100, 110)))
    row = checks.pid_row(w, tuple(range(100, 110)), 0, "b")
    assert "100, 101, 102 (+7 more)" in row.detail


def test_addresses() -> None:
    d = dest()
    ok = by_check(checks.network_rows(workload(sockets=(listener("10.0.0.2"),
                                                         listener("127.0.0.5", 81))),
                                      d.networks, (), "b"))
    assert ok["addresses"].status is P
    missing = by_check(checks.network_rows(
        workload(sockets=(listener("10.0.0.1", 9099),
                          InetSocket("tcp", "10.0.0.1", 5000, "10.0.0.9", 80, "ESTABLISHED"))),
        d.networks, (), "b"))
    assert missing["addresses"].status is F
    assert "lacks 10.0.0.1" in missing["addresses"].detail
    assert "-> 10.0.0.9:80" in missing["addresses"].detail
    assert missing["addresses"].modes == ALL_MODES
    wild = by_check(checks.network_rows(workload(sockets=(listener(),)), (), (), "b"))
    assert wild["addresses"].status is P
    none = by_check(checks.network_rows(workload(), (), (), "b"))
    assert none["addresses"].detail == "no inet sockets"


@pytest.mark.parametrize(("ours", "theirs", "clash"), [
    (listener("0.0.0.0", 80), listener("10.0.0.2", 80), True),
    (listener("10.0.0.2", 80), listener("0.0.0.0", 80), True),
    (listener("10.0.0.2", 80), listener("127.0.0.1", 80), False),
    (listener("0.0.0.0", 80), listener("0.0.0.0", 81), False),
    (listener("0.0.0.0", 80), listener("0.0.0.0", 80, "udp"), False),
    (listener("0.0.0.0", 53, "udp"), listener("::", 53, "udp"), True),
    (InetSocket("tcp", "10.0.0.2", 80, "1.2.3.4", 9, "ESTABLISHED"), listener("0.0.0.0", 80),
     False),
])
def test_ports(ours: InetSocket, theirs: InetSocket, clash: bool) -> None:
    rows = by_check(checks.network_rows(workload(sockets=(ours,)), ["0.0.0.0/0", "::/0"],
                                        (theirs,), "b"))
    assert (rows["ports"].status is F) == clash


def test_files() -> None:
    q = CheckQuery(workload(files=(reg("/a", size=3), reg("/b"), reg("/c", mtime=1),
                                   reg("/lib.so", "map", mtime=1),
                                   reg("/data/d"), FileRef("/dev/x", "fd", FileStat("c", 0, 1)),
                                   reg("/e"))),
                   synced=("/data/",))
    stats = {"/a": FileStat("f", 4, 5), "/b": None, "/c": FileStat("f", 10, 2),
             "/lib.so": FileStat("f", 10, 2), "/dev/x": FileStat("c", 0, 7),
             "/e": FileStat("d", 0, 5)}
    rows = by_check(checks.file_rows(q, stats, "b"))
    assert rows["files"].status is F
    assert rows["files"].detail.startswith("3 of 6 files differ on b: /a (fd) has 4 bytes, not 3")
    assert "/b (fd) missing" in rows["files"].detail
    assert "/e (fd) is another type of file (+0" not in rows["files"].detail
    # another build of mapped code breaks the workload: a warning that blocks
    assert rows["files.mtime"].status is W
    assert rows["files.mtime"].modes == ALL_MODES
    assert "/lib.so (map)" in rows["files.mtime"].detail
    # an open data file of the same size with another mtime: a note, never blocking
    assert rows["files.data"].status is W
    assert rows["files.data"].modes == frozenset()
    assert "/c (fd)" in rows["files.data"].detail


def live(path: str, size: int, mtime: int, ino: int = 7) -> FileRef:
    return FileRef(path, "fd", FileStat("f", size, mtime, fsid=1, dev=2, ino=ino), live=True)


def test_files_the_workload_writes_are_compared_at_the_freeze_not_now() -> None:
    q = CheckQuery(workload(files=(live("/var/log/access.log", 3111, 9),
                                   live("/run/hb", 8, 9, ino=8))))
    # another file on B (another inode), of another size and mtime: no failure, a note
    stats = {"/var/log/access.log": FileStat("f", 3055, 5, fsid=1, dev=2, ino=99),
             "/run/hb": FileStat("f", 8, 5, fsid=3, dev=4, ino=98)}
    rows = by_check(checks.file_rows(q, stats, "b"))
    assert rows["files"].status is P
    assert rows["files.live"].status is W
    assert rows["files.live"].modes == frozenset()
    assert "/var/log/access.log (fd, written by the workload)" in rows["files.live"].detail
    assert "2 files" in rows["files.live"].detail


def test_files_of_another_size_fail_unless_written_or_shared() -> None:
    still = FileRef("/srv/a", "fd", FileStat("f", 10, 5, fsid=1, dev=2, ino=7))
    q = CheckQuery(workload(files=(still,)))
    elsewhere = FileStat("f", 12, 6, fsid=1, dev=2, ino=8)
    assert by_check(checks.file_rows(q, {"/srv/a": elsewhere}, "b"))["files"].status is F
    # the same inode of the same filesystem: one file, grown between the two stats
    shared = FileStat("f", 12, 6, fsid=1, dev=9, ino=7)
    rows = checks.file_rows(q, {"/srv/a": shared}, "b")
    assert [(r.check, r.status) for r in rows] == [("files", P)]
    assert "1 the same file on both (shared storage)" in rows[0].detail
    # same device and inode, no filesystem id: the same file too
    assert checks.file_rows(q, {"/srv/a": FileStat("f", 12, 6, fsid=0, dev=2, ino=7)},
                            "b")[0].status is P


@pytest.mark.parametrize(("a", "b", "same"), [
    (FileStat("f", 1, 1, 5, 6, 7), FileStat("f", 2, 2, 5, 0, 7), True),
    (FileStat("f", 1, 1, 0, 6, 7), FileStat("f", 2, 2, 0, 6, 7), True),
    (FileStat("f", 1, 1, 5, 6, 7), FileStat("f", 1, 1, 5, 6, 8), False),
    (FileStat("f", 1, 1, 0, 6, 7), FileStat("f", 1, 1, 0, 9, 7), False),
    (FileStat("f", 1, 1), FileStat("f", 1, 1), False),  # no identity known: never the same
])
def test_same_file(a: FileStat, b: FileStat, same: bool) -> None:
    assert a.same_file(b) is same


def test_files_all_present_and_synced() -> None:
    q = CheckQuery(workload(files=(reg("/x"), reg("/data/y"), reg("/data"))), synced=("/data",))
    rows = checks.file_rows(q, {"/x": FileStat("f", 10, 5)}, "b")
    assert [(r.check, r.status) for r in rows] == [("files", P)]
    assert "all 1 files" in rows[0].detail
    assert "2 in synced paths" in rows[0].detail


def test_files_notes() -> None:
    q = CheckQuery(workload(files=(), deleted_files=2), omitted_files=7)
    rows = by_check(checks.file_rows(q, {}, "b"))
    for name in ("files.omitted", "files.deleted"):
        assert rows[name].status is W
        assert not rows[name].modes


@pytest.mark.parametrize(("path", "synced", "expected"), [
    ("/data/x", ("/data",), True), ("/data", ("/data/",), True), ("/database", ("/data",), False),
    ("/x", (), False), ("/a/b/c", ("/",), True),
])
def test_synced_by(path: str, synced: tuple[str, ...], expected: bool) -> None:
    assert checks.synced_by(path, synced) is expected


@pytest.mark.parametrize(("rss", "available", "status"), [
    (100, 1000, P), (800, 1000, P), (801, 1000, W), (1001, 1000, F)])
def test_memory(rss: int, available: int, status: Status) -> None:
    assert checks.memory_row(rss, available, "b").status is status


def test_disk_per_mode() -> None:
    rss = 256 * MiB
    assert [r.status for r in checks.disk_rows(rss, 10 << 30, "b")] == [P]
    lazy_only = checks.disk_rows(rss, 100 * MiB, "b")
    v = merge([], lazy_only, ("cold", "postcopy"))
    assert v.allowed_modes == ("postcopy",)
    nothing = checks.disk_rows(rss, 10 * MiB, "b")
    assert merge([], nothing, ("cold", "postcopy")).allowed_modes == ()
    assert "even post-copy" in nothing[0].detail


def test_disk_for_a_streamed_cold_restore() -> None:
    """Where lazy pages work on the destination, cold streams its restore (no page files):
    room for the images besides memory is enough for it, as for post-copy; pre-copy still
    needs room for the pages."""
    rss = 256 * MiB
    rows = checks.disk_rows(rss, 100 * MiB, "b", streams=True)
    modes = ("cold", "postcopy", "precopy", "hybrid")
    assert merge([], rows, modes).allowed_modes == ("cold", "postcopy", "hybrid")
    assert merge([], checks.disk_rows(rss, 100 * MiB, "b"), modes).allowed_modes == \
        ("postcopy", "hybrid")  # no lazy pages there: cold writes page files
    assert merge([], checks.disk_rows(rss, 10 * MiB, "b", streams=True),
                 modes).allowed_modes == ()
    assert [r.status for r in checks.disk_rows(rss, 10 << 30, "b", streams=True)] == [P]


def test_dump_row() -> None:
    ok = checks.dump_row(True, 23.4, None, "/l", 2 * MiB)
    assert ok.status is P
    assert "frozen 23 ms" in ok.detail
    bad = checks.dump_row(False, None, "unix socket to the outside", "/x/dry-run.log", 0)
    assert bad.status is F
    assert "unix socket" in bad.detail
    assert "/x/dry-run.log" in bad.fix
    assert "freeze not measured" in bad.detail


def test_source_rows() -> None:
    here = NodeFacts("a", "4.2.1", ALL_FEATURES)
    dump = checks.dump_row(True, 1.0, None, "/l", 0)
    rows = checks.source_rows(workload(), here, "4.2.1", "b", dump)
    assert [r.check for r in rows][:2] == ["workload", "criu"]
    assert "postcopy.risk" in by_check(rows)
    assert "2 processes, 3 tasks, RSS 256 MiB" in rows[0].detail


def test_mib() -> None:
    assert checks.mib(5 * MiB) == "5 MiB"
    assert checks.mib(20 << 30) == "20.0 GiB"


@pytest.mark.parametrize(("soft_dirty", "uffd_wp", "status", "named"), [
    (True, True, P, "soft-dirty"), (True, False, P, "soft-dirty"),
    (False, True, P, "uffd-wp"), (False, False, F, "none"),
])
def test_the_dirty_tracking_row_names_the_tracker(soft_dirty: bool, uffd_wp: bool,
                                                   status: Status, named: str) -> None:
    features = {**ALL_FEATURES, "mem_track": soft_dirty, "mem_track_uffd": uffd_wp}
    row = by_check(checks.kernel_rows("source", "a", features, workload()))[
        "kernel.dirty-tracking"]
    assert row.status is status
    assert named in row.detail
    if status is F:
        assert row.modes == frozenset({"precopy", "hybrid"})
        assert "CONFIG_MEM_SOFT_DIRTY" in row.fix
        assert "userfaultfd" in row.fix


def test_a_terminal_index_taken_on_the_destination_fails_naming_it() -> None:
    q = CheckQuery(workload(ptys=(0, 5)))
    row = by_check(checks.destination_rows(q, dest(taken_ptys=(5,)), "a"))["ptys"]
    assert row.status == F
    assert "/dev/pts/5" in row.detail
    assert "/dev/pts/0" not in row.detail
    assert "of its own" in row.fix
    ok = by_check(checks.destination_rows(q, dest(), "a"))["ptys"]
    assert ok.status == P
    assert "2 terminals" in ok.detail


# -- file locks -----------------------------------------------------------------------------

LOCK = "/var/lib/app/app.lock"


def _locked(here: FileStat, there: FileStat | None, locked_there: tuple[str, ...] = ()
            ) -> Row | None:
    w = workload(files=(*workload().files, FileRef(LOCK, "fd", here)), locked_files=(LOCK,))
    d = dest(files={**dest().files, LOCK: there}, locked_here=locked_there)
    return by_check(checks.destination_rows(CheckQuery(w), d, "a")).get("locks")


def test_a_tree_without_locks_gets_no_lock_row() -> None:
    assert "locks" not in by_check(checks.destination_rows(CheckQuery(workload()), dest(), "a"))


def test_locks_on_a_file_of_the_destination_s_own_pass() -> None:
    row = _locked(FileStat("f", 0, 5, fsid=1, dev=10, ino=7),
                  FileStat("f", 0, 5, fsid=2, dev=20, ino=7))
    assert row is not None
    assert row.status is P
    assert LOCK in row.detail


def test_a_lock_on_the_same_file_on_both_nodes_fails_every_mode() -> None:
    """Shared storage, or one host: the frozen source keeps its lock until the commit, so
    the restore's CRIU would wait for it for ever."""
    same = FileStat("f", 0, 5, fsid=1, dev=10, ino=7)
    row = _locked(same, same, locked_there=(LOCK,))
    assert row is not None
    assert row.status is F
    assert row.modes == ALL_MODES
    assert "same files" in row.detail
    assert row.fix


def test_a_lock_another_process_holds_on_the_destination_fails() -> None:
    row = _locked(FileStat("f", 0, 5, fsid=1, dev=10, ino=7),
                  FileStat("f", 0, 5, fsid=2, dev=20, ino=7), locked_there=(LOCK,))
    assert row is not None
    assert row.status is F
    assert "another process" in row.detail


def test_long_paths_are_clipped_to_keep_a_row_one_line() -> None:
    long = [reg("/opt/" + "d" * 300 + f"/lib{i}.jar") for i in range(5)]
    rows = checks.file_rows(CheckQuery(workload(files=tuple(long))), {}, "n" * 63)
    assert rows[0].status is F
    assert "lib0.jar" in rows[0].detail
    assert checks.clip("abcdefghij", 5) == "ab…ij"
    assert len(checks.clip("x" * 500)) == checks.EXAMPLE_CHARS
    one = "/opt/" + "d" * 150 + "/lib.jar"  # one path of up to SHOWN_CHARS stays whole
    assert one in checks.file_rows(CheckQuery(workload(files=(reg(one),))), {}, "b")[0].detail


# -- datagram sockets outside the tree -----------------------------------------------------

def _unix(peers: tuple[str, ...], unreachable: tuple[tuple[str, str], ...] = ()) -> Row | None:
    w = workload(unix_peers=peers)
    d = dest(unix_unreachable=unreachable)
    return by_check(checks.destination_rows(CheckQuery(w), d, "a")).get("unix")


def test_a_tree_without_external_datagram_peers_gets_no_unix_row() -> None:
    assert _unix(()) is None


def test_external_datagram_peers_bound_on_the_destination_pass() -> None:
    row = _unix(("/dev/log", "@audit"))
    assert row is not None
    assert row.status is P
    assert "/dev/log" in row.detail
    assert "@audit" in row.detail


def test_an_external_datagram_peer_missing_on_the_destination_fails_every_mode() -> None:
    """CRIU's restore connects the tree's socket to the same name again, and fails there."""
    row = _unix(("/dev/log", "@audit"), unreachable=(("/dev/log", "no such socket"),))
    assert row is not None
    assert row.status is F
    assert row.modes == ALL_MODES
    assert "/dev/log: no such socket" in row.detail
    assert row.fix is not None
    assert "/dev/log" in row.fix


def test_a_failed_dry_run_of_a_task_with_other_credentials_says_why() -> None:
    """On a host whose CRIU lacks CAP_SYS_RESOURCE, CRIU's own message names none of it."""
    row = checks.dump_row(False, 21.0, "Can't retrieve FD from socket", "/s/dry-run.log", 0,
                          credentials="PID 8 (mosquitto) runs as uid 106")
    assert row.status is F
    assert "Can't retrieve FD from socket" in row.detail
    assert "PID 8 (mosquitto) runs as uid 106" in row.detail
    assert "CAP_SYS_RESOURCE" in row.detail
    assert row.fix is not None
    assert "root" in row.fix
    plain = checks.dump_row(False, 21.0, "Can't dump it", "/s/dry-run.log", 0)
    assert plain.fix is not None
    assert "fix what CRIU names" in plain.fix


def test_a_stream_to_a_process_outside_the_tree_gets_a_fix_that_can_work() -> None:
    """A journald stream on stdout (any systemd service's): CRIU names the peer, and no
    CRIU option moves it; the fix says what can."""
    reason = ("unix: Can't dump half of stream unix connection. name: (null); peer name: "
              "/run/systemd/journal/stdout")
    row = checks.dump_row(False, 20.0, reason, "/s/dry-run.log", 0)
    assert row.status is F
    assert "/run/systemd/journal/stdout" in row.detail
    assert row.fix is not None
    assert "StandardOutput=" in row.fix
    assert "fix what CRIU names" not in row.fix
