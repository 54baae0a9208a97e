"""Which files of a CheckRequest the destination compares (issue 16 finding 10)."""

from __future__ import annotations

from dataclasses import replace

from ferryman.agent.preflight import withheld_row, withhold
from ferryman.host.inspect import FileRef, FileStat, WorkloadFacts
from ferryman.migration.query import CheckQuery


def _query(paths: list[str], synced: tuple[str, ...] = ()) -> CheckQuery:
    files = tuple(FileRef(p, "fd", FileStat("f", 1, 0)) for p in paths)
    w = WorkloadFacts(pid=1, comm="x", processes=1, ids=(1,), own_pid_ns=True,
                      own_net_ns=True, own_time_ns=False, rss_bytes=0, files=files,
                      sockets=())
    return CheckQuery(w, synced)


def test_private_files_are_left_out_and_counted() -> None:
    q, withheld = withhold(_query(["/etc/passwd", "/etc/shadow", "/root/x"]), ())
    assert [f.path for f in q.workload.files] == ["/etc/passwd"]
    assert withheld == 2


def test_private_files_in_synced_paths_are_left_to_the_sync() -> None:
    q, withheld = withhold(_query(["/etc/passwd", "/root/app/data"], synced=("/root/app",)), ())
    assert [f.path for f in q.workload.files] == ["/etc/passwd"]
    assert withheld == 0


def test_nothing_private_leaves_the_query_as_it_was() -> None:
    q = _query(["/etc/passwd"])
    assert withhold(q, ()) == (q, 0)


def test_the_withheld_note_blocks_no_mode() -> None:
    row = withheld_row(3, "b")
    assert row.modes == frozenset()
    assert "3 files not compared" in row.detail
    assert "--check-roots" in row.fix


def test_private_socket_names_are_left_out_and_counted_abstract_ones_kept() -> None:
    """The destination connects to each named log socket: a path only where it would answer
    about the file (a socket under /root is nobody's business), abstract names always."""
    q = _query(["/etc/passwd"])
    q = replace(q, workload=replace(q.workload, unix_peers=("/root/private.sock", "@log")))
    out, withheld = withhold(q, ())
    assert out.workload.unix_peers == ("@log",)
    assert withheld == 1
