"""The pre-flight rules: facts in, verdict rows out. Pure.

Each rule looks at what one side gathered (the workload from the source's /proc, a node's
CRIU and kernel features, what the destination has at the paths, addresses and PIDs the
workload needs) and returns :class:`~ferryman.migration.verdict.Row` objects with a one-line
fix. :func:`destination_rows` is everything the destination agent answers;
:func:`source_rows` what the source adds (its own CRIU and kernel, and the dry-run dump).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ferryman.host.inspect import FileRef, FileStat, WorkloadFacts
from ferryman.host.netinfo import InetSocket, conflicts, is_local
from ferryman.migration.plan import postcopy_blocker
from ferryman.migration.query import CheckQuery
from ferryman.migration.verdict import (
    ALL_MODES,
    LAZY_MODES,
    TRACKING_MODES,
    Row,
    Status,
)
from ferryman.mode import Mode

P, W, F = Status.PASS, Status.WARN, Status.FAIL
NOTE: Final[frozenset[Mode]] = frozenset()  # a row that concerns no mode: shown, never blocks
IMAGE_MARGIN: Final = 64 << 20  # images besides memory, logs, slack (as agent/source.py)
MEMORY_WARN_SHARE: Final = 0.8
EXAMPLES: Final = 3
PIPE_SIZE_FIX: Final = "run 'sysctl -w fs.pipe-max-size=4194304' on {node} (CRIU lacks " \
                       "CAP_SYS_RESOURCE to grow its pipes past the limit)"


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """A node's CRIU: its name, version and features (``mem_track``, ``lazy_pages``,
    ``lazy_pipes``, ``network_lock``, ``time_ns``; absent means missing)."""

    node: str
    criu_version: str
    features: Mapping[str, bool]


@dataclass(frozen=True, slots=True)
class DestinationFacts:
    """What the destination found for one query."""

    criu: NodeFacts
    cpu_problem: str | None  # None: the source's CPU description passed CRIU's cpuinfo check
    taken_ids: tuple[int, ...]  # the queried PIDs in use here
    taken_ptys: tuple[int, ...]  # the queried terminal indexes in use in /dev/pts here
    networks: frozenset[str]  # local addresses, as networks (see host.netinfo.local_networks)
    bound: tuple[InetSocket, ...]  # sockets holding ports here
    files: Mapping[str, FileStat | None]  # the queried paths as they are here
    memory_available: int
    disk_free: int
    locked_here: tuple[str, ...] = ()  # the queried locked files that are locked here too
    unix_unreachable: tuple[tuple[str, str], ...] = ()  # queried socket names, why not here


def mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 10 << 30 else f"{n / 2**20:.0f} MiB"


SHOWN_CHARS: Final = 240  # the examples of a row together (its line: MAX_LINE_CHARS at most)
EXAMPLE_CHARS: Final = SHOWN_CHARS // EXAMPLES  # one example of several long ones


def clip(text: str, width: int = EXAMPLE_CHARS) -> str:
    """``text`` shortened in its middle to ``width`` characters (a long path keeps its start
    and its file name)."""
    if len(text) <= width:
        return text
    keep = width - 1
    return f"{text[:keep // 2]}…{text[len(text) - (keep - keep // 2):]}"


def _some(items: Sequence[str], total: int | None = None) -> str:
    first = items[:EXAMPLES]
    shown = ", ".join(first)
    if len(shown) > SHOWN_CHARS:  # long paths: each shortened in its middle
        shown = ", ".join(clip(item, SHOWN_CHARS // len(first) - 2) for item in first)
    more = (total if total is not None else len(items)) - min(len(items), EXAMPLES)
    return f"{shown} (+{more} more)" if more > 0 else shown


def _n(count: int, noun: str, plural: str = "") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


# -- rules ---------------------------------------------------------------------------------

def workload_row(w: WorkloadFacts) -> Row:
    ns = "own PID namespace" if w.own_pid_ns else "host PID namespace"
    return Row("workload", "source", P,
               f"PID {w.pid} ({w.comm}): {_n(w.processes, 'process', 'processes')}, "
               f"{_n(len(w.ids), 'task')}, RSS {mib(w.rss_bytes)}, {ns}, "
               f"{_n(len(w.sockets), 'inet socket')}, {_n(len(w.files), 'file')}")


def criu_row(source_version: str, dest_version: str, dest_node: str) -> Row:
    src, dst = _version(source_version), _version(dest_version)
    what = f"{source_version} here, {dest_version} on {dest_node}"
    if len(src) < 2 or len(dst) < 2:
        return Row("criu", "both", W, f"{what}: versions not understood",
                   "install CRIU >= 4.2 on both nodes (scripts/install-criu.sh)")
    if src[0] != dst[0]:
        return Row("criu", "both", F, f"{what}: different major versions, images not compatible",
                   "install the same CRIU release on both nodes")
    if dst < src:
        return Row("criu", "both", W, f"{what}: the destination is older; images may use "
                   "what it does not know", f"upgrade CRIU on {dest_node} to {source_version}")
    return Row("criu", "both", P, f"{what}: images compatible")


def _feature(row: str, side: str, node: str, present: bool, label: str, *,
             modes: frozenset[Mode], fix: str) -> Row:
    if present:
        return Row(row, side, P, f"{node}: {label}: present")
    if not modes:
        return Row(row, side, P, f"{node}: {label}: missing, not needed there")
    return Row(row, side, F, f"{node}: {label}: missing", fix.format(node=node), modes)


def tracker_row(side: str, node: str, soft_dirty: bool, uffd_wp: bool,
                modes: frozenset[Mode]) -> Row:
    """kernel.dirty-tracking: which tracker pre-copy would use on ``node`` (soft-dirty
    first; uffd-wp, userfaultfd async write-protect, where the kernel has no soft-dirty)."""
    label = "dirty-page tracker (pre-copy)"
    if soft_dirty:
        return Row("kernel.dirty-tracking", side, P, f"{node}: {label}: soft-dirty")
    if uffd_wp:
        return Row("kernel.dirty-tracking", side, P,
                   f"{node}: {label}: uffd-wp (no soft-dirty; userfaultfd write-protect "
                   "and PAGEMAP_SCAN's written bits)")
    return _feature("kernel.dirty-tracking", side, node, False,
                    f"{label}: none (neither soft-dirty nor uffd-wp)", modes=modes,
                    fix="use --mode cold or postcopy; pre-copy needs CONFIG_MEM_SOFT_DIRTY, "
                        "or Linux 6.7+ with userfaultfd write-protect (x86-64), on {node}")


def kernel_rows(side: str, node: str, features: Mapping[str, bool],
                w: WorkloadFacts) -> list[Row]:
    """The kernel features each mode needs on ``side`` (``source`` or ``destination``)."""
    has = {name: bool(features.get(name, False)) for name in
           ("mem_track", "mem_track_uffd", "lazy_pages", "lazy_pipes", "network_lock",
            "time_ns")}
    tracking_modes = TRACKING_MODES if side == "source" else NOTE
    net_needed = bool(w.sockets) or w.own_net_ns
    rows = [
        tracker_row(side, node, has["mem_track"], has["mem_track_uffd"], tracking_modes),
        _feature("kernel.userfaultfd", side, node, has["lazy_pages"],
                 "userfaultfd lazy pages (post-copy)", modes=LAZY_MODES,
                 fix="use --mode cold; post-copy needs userfaultfd on {node}"),
        _feature("kernel.pipe-size", side, node, has["lazy_pipes"],
                 "4 MiB pipes for lazy pages (fs.pipe-max-size or CAP_SYS_RESOURCE)",
                 modes=LAZY_MODES, fix=PIPE_SIZE_FIX),
    ]
    if has["network_lock"] or net_needed:
        rows.append(_feature("kernel.network-lock", side, node, has["network_lock"],
                             "nftables network lock", modes=ALL_MODES,
                             fix="load nf_tables on {node} (CRIU locks the workload's "
                                 "connections with it)"))
    else:
        rows.append(Row("kernel.network-lock", side, P,
                        f"{node}: nftables network lock: missing, not needed (no sockets)"))
    if side == "destination":
        if has["time_ns"]:
            rows.append(Row("kernel.time-ns", side, P, f"{node}: time namespaces: present"))
        elif w.own_time_ns:
            rows.append(Row("kernel.time-ns", side, F, f"{node}: time namespaces: missing, and "
                            "the workload has its own", "restore on a kernel >= 5.6 with "
                            "CONFIG_TIME_NS"))
        else:
            rows.append(Row("kernel.time-ns", side, W, f"{node}: time namespaces: missing; its "
                            "monotonic clocks will jump", "use a kernel >= 5.6 with "
                            "CONFIG_TIME_NS on the destination"))
    return rows


def cpu_row(problem: str | None, source_node: str, dest_node: str) -> Row:
    if problem is None:
        return Row("cpu", "destination", P,
                   f"{source_node}'s CPU features are available on {dest_node} (criu cpuinfo)")
    return Row("cpu", "destination", F, f"{dest_node} lacks CPU features the workload may use: "
               f"{problem[:200]}", "move it between nodes with the same CPU features")


def pid_row(w: WorkloadFacts, taken: Sequence[int], omitted: int, node: str) -> Row:
    if w.own_pid_ns:
        return Row("pids", "destination", P,
                   "own PID namespace: its PIDs are restored inside a new one")
    if taken:
        return Row("pids", "destination", F,
                   f"PIDs taken on {node}: {_some([str(p) for p in taken])} "
                   f"({len(taken)} of {len(w.ids)}); CRIU restores the same PIDs",
                   f"start it in its own PID namespace ('unshare -p -f'), or free those PIDs "
                   f"on {node}")
    if omitted:
        return Row("pids", "destination", W, f"{len(w.ids)} PIDs free on {node}, {omitted} "
                   "not checked (too many)", "free them on the destination, or run it in its "
                   "own PID namespace")
    return Row("pids", "destination", P, f"all {len(w.ids)} PIDs are free on {node}")


def pty_row(w: WorkloadFacts, taken: Sequence[int], node: str) -> Row:
    if taken:
        return Row("ptys", "destination", F,
                   f"terminals taken on {node}: "
                   f"{_some([f'/dev/pts/{n}' for n in taken])}; CRIU restores each of the "
                   f"{len(w.ptys)} terminals the workload holds at the same index",
                   f"close those terminals on {node} (a login session there holds one), or "
                   "run the workload with a /dev/pts of its own (a container)")
    if w.ptys:
        return Row("ptys", "destination", P,
                   f"{_n(len(w.ptys), 'terminal')}: the same indexes are free on {node}")
    return Row("ptys", "destination", P, "no terminals in this node's /dev/pts")


def _sock(s: InetSocket) -> str:
    peer = f" -> {s.remote_ip}:{s.remote_port}" if s.state == "ESTABLISHED" else ""
    return f"{s.proto} {s.local_ip}:{s.local_port} {s.state.lower()}{peer}"


def network_rows(w: WorkloadFacts, networks: Iterable[str], bound: Sequence[InetSocket],
                 node: str) -> list[Row]:
    nets = list(networks)
    needed = [s for s in w.sockets if not s.wildcard]
    missing = [s for s in needed if not is_local(s.local_ip, nets)]
    rows: list[Row] = []
    if missing:
        addrs = sorted({s.local_ip for s in missing})
        rows.append(Row("addresses", "destination", F,
                        f"{node} lacks {_some(addrs)} for {_some([_sock(s) for s in missing])}",
                        f"add the address to {node} (ip addr add ADDR/PREFIX dev IFACE) or "
                        "let it bind the wildcard address"))
    elif needed:
        rows.append(Row("addresses", "destination", P,
                        f"{node} has every address its {len(needed)} sockets use"))
    else:
        rows.append(Row("addresses", "destination", P,
                        "no socket bound to a specific address" if w.sockets else
                        "no inet sockets"))
    clashes = [(s, c) for s in w.sockets for c in conflicts(s, bound)]
    if clashes:
        rows.append(Row("ports", "destination", F,
                        f"ports in use on {node}: "
                        + _some([f"{s.proto} {s.local_port} (held by {c.local_ip})"
                                 for s, c in clashes]),
                        f"stop what holds those ports on {node}, or move the workload "
                        "elsewhere"))
    else:
        listening = sum(1 for s in w.sockets if s.binds)
        rows.append(Row("ports", "destination", P,
                        f"{_n(listening, 'listening port')}: free on {node}" if listening
                        else "no listening ports"))
    return rows


# What one file's comparison found (see :func:`_classify`).
SAME, SHARED, BAD, LIVE, CODE, DATA = "same", "shared", "bad", "live", "code", "data"
CODE_KINDS: Final = frozenset({"exe", "map"})


def _classify(f: FileRef, there: FileStat | None) -> tuple[str, str]:
    """Decide one file from evidence. A difference the workload's own running explains is no
    failure: the same inode on both nodes (shared storage), or a file the workload is writing
    (open for writing, a shared writable mapping, or a stat that moved on the source). Whether
    such a file matches is decided where it can be: CRIU checks the size of every file it
    reopens when it restores, after the freeze, and a mismatch then rolls back."""
    if there is None:
        return BAD, f"{f.path} ({f.kind}) missing"
    if there.ftype != f.stat.ftype:
        return BAD, f"{f.path} ({f.kind}) is another type of file"
    if f.stat.ftype != "f" or (there.size, there.mtime_ns) == (f.stat.size, f.stat.mtime_ns):
        return SAME, ""
    if f.stat.same_file(there):
        return SHARED, ""
    if f.live:
        return LIVE, f"{f.path} ({f.kind}, written by the workload)"
    if there.size != f.stat.size:
        return BAD, f"{f.path} ({f.kind}) has {there.size} bytes, not {f.stat.size}"
    if f.kind in CODE_KINDS:
        return CODE, f"{f.path} ({f.kind}) has another mtime"
    return DATA, f"{f.path} ({f.kind}) has another mtime"


def synced_by(path: str, synced: Iterable[str]) -> bool:
    roots = [s.rstrip("/") for s in synced]
    return any(path == root or path.startswith(root + "/") for root in roots)


def file_rows(q: CheckQuery, stats: Mapping[str, FileStat | None], node: str) -> list[Row]:
    """Rows that block: a file missing, of another type, or of another size that nothing
    explains (FAIL); an executable or mapped file of the same size but another mtime (WARN:
    CRIU maps the destination's copy, so another build of it breaks the workload). Notes that
    never block: files the workload writes (CRIU compares them at the freeze), open data files
    with another mtime, files not checked, deleted files."""
    files = [f for f in q.workload.files if not synced_by(f.path, q.synced)]
    n_synced = len(q.workload.files) - len(files)
    found: dict[str, list[str]] = {k: [] for k in (SAME, SHARED, BAD, LIVE, CODE, DATA)}
    for f in files:
        outcome, text = _classify(f, stats.get(f.path))
        found[outcome].append(text)
    bad, code, live, data = found[BAD], found[CODE], found[LIVE], found[DATA]
    rows: list[Row] = []
    if bad:
        rows.append(Row("files", "destination", F,
                        f"{len(bad)} of {len(files)} files differ on {node}: {_some(bad)}",
                        f"copy them to {node} (same path and size), or name their directory "
                        "with --sync (check and migrate)"))
    if code:
        rows.append(Row("files.mtime", "destination", W,
                        f"{_n(len(code), 'executable or mapped file')} of the same size but "
                        f"another mtime on {node}: {_some(code)}",
                        f"install the same build on {node} (CRIU maps its copy on restore), "
                        "or accept with --force"))
    if live:
        rows.append(Row("files.live", "destination", W,
                        f"{_n(len(live), 'file')} the workload writes differ on {node} now: "
                        f"{_some(live)}; CRIU compares their size at the freeze",
                        "keep them on storage both nodes share, or sync them (a size "
                        "mismatch at the restore rolls the migration back)", NOTE))
    if data:
        rows.append(Row("files.data", "destination", W,
                        f"{_n(len(data), 'open file')} of the same size but another mtime on "
                        f"{node}: {_some(data)}",
                        "make sure they have the same content on both nodes", NOTE))
    if not bad and not code:
        extra = [f"{len(found[SHARED])} the same file on both (shared storage)"] \
            if found[SHARED] else []
        extra += [f"{n_synced} in synced paths"] if n_synced else []
        rows.append(Row("files", "destination", P,
                        f"all {len(files)} files (exe, cwd, open, mapped) can be restored on "
                        f"{node}" + "".join(f"; {e}" for e in extra)))
    if q.omitted_files:
        rows.append(Row("files.omitted", "destination", W,
                        f"{q.omitted_files} files not checked (the query was too large)",
                        "compare the rest by hand, or sync them", NOTE))
    if q.workload.deleted_files:
        rows.append(Row("files.deleted", "source", W,
                        f"{q.workload.deleted_files} open files are deleted: CRIU copies "
                        "them into the images (up to 1 MiB each)",
                        "keep such files small, or close them before migrating", NOTE))
    return rows


def lock_rows(w: WorkloadFacts, files: Mapping[str, FileStat | None],
              locked_here: Sequence[str], node: str) -> list[Row]:
    """The tree's file locks: CRIU takes each again on ``node`` at the restore, while the
    frozen source still holds it here (until the commit). A lock file that is the same file
    on both nodes (shared storage, or one host) or that a process on ``node`` holds blocks
    the restore for good."""
    if not w.locked_files:
        return []
    ours = {f.path: f.stat for f in w.files}
    shared = [p for p in w.locked_files
              if (here := ours.get(p)) is not None and (there := files.get(p)) is not None
              and here.same_file(there)]
    taken = [p for p in locked_here if p not in shared]
    if shared:
        return [Row("locks", "destination", F,
                    f"the tree holds locks on files that are the same files on {node} "
                    f"({_some(shared)}): the restore there cannot take a lock the frozen "
                    "source keeps until the commit",
                    "move it between nodes that do not share these files",
                    ALL_MODES)]
    if taken:
        return [Row("locks", "destination", F,
                    f"files the tree holds locks on are locked on {node} by another "
                    f"process ({_some(taken)})",
                    f"stop what holds them on {node}", ALL_MODES)]
    return [Row("locks", "destination", P,
                f"{_n(len(w.locked_files), 'file lock')} can be taken again on {node} "
                f"({_some(list(w.locked_files))})")]


def unix_peer_rows(w: WorkloadFacts, unreachable: Sequence[tuple[str, str]],
                   node: str) -> list[Row]:
    """The datagram sockets outside the tree it is connected to (``/dev/log``): CRIU's
    restore connects to each name again on ``node``, and fails where none is bound."""
    if not w.unix_peers:
        return []
    if unreachable:
        name, why = unreachable[0]
        return [Row("unix", "destination", F,
                    f"the tree sends datagrams to {_some([n for n, _ in unreachable])} outside "
                    f"it, which the restore on {node} connects to again: {clip(name)}: {why}",
                    f"start what serves {clip(name)} on {node} first", ALL_MODES)]
    return [Row("unix", "destination", P,
                f"{_n(len(w.unix_peers), 'datagram socket')} outside the tree it is connected "
                f"to can be connected to again on {node} ({_some(list(w.unix_peers))})")]


def memory_row(rss: int, available: int, node: str) -> Row:
    what = f"RSS {mib(rss)}, {mib(available)} available on {node}"
    if rss > available:
        return Row("memory", "destination", F, what, f"free memory on {node} first")
    if rss > available * MEMORY_WARN_SHARE:
        return Row("memory", "destination", W, f"{what}: less than 20% would be left",
                   f"free memory on {node} first")
    return Row("memory", "destination", P, what)


def disk_rows(rss: int, free: int, node: str, *, streams: bool = False) -> list[Row]:
    """The images' room on the destination. ``streams``: lazy pages work on ``node``, so a
    process tree's cold migration can stream its restore there (no page files: section
    4.2.1 of docs/ARCHITECTURE.md); the plan still refuses one that cannot (a source without
    lazy pages, ``--cold-restore images``) for want of room, before anything is frozen."""
    full, lazy = rss + IMAGE_MARGIN, IMAGE_MARGIN
    where = f"{mib(free)} free for images on {node}"
    fix = f"free space in {node}'s agent --state-dir"
    if free >= full:
        return [Row("disk", "destination", P, f"{where}; needs about {mib(full)}")]
    if free >= lazy and streams:
        streaming = LAZY_MODES | {Mode.COLD}
        return [Row("disk", "destination", F, f"{where}; pre-copy needs about "
                    f"{mib(full)} (RSS + {mib(IMAGE_MARGIN)})", fix, ALL_MODES - streaming),
                Row("disk.lazy", "destination", P,
                    f"post-copy and cold with a streamed restore (no page files) need about "
                    f"{mib(lazy)} there", "", streaming)]
    if free >= lazy:
        return [Row("disk", "destination", F, f"{where}; cold and pre-copy need about "
                    f"{mib(full)} (RSS + {mib(IMAGE_MARGIN)})", fix,
                    ALL_MODES - LAZY_MODES),
                Row("disk.lazy", "destination", P,
                    f"post-copy needs about {mib(lazy)} there", "", LAZY_MODES)]
    return [Row("disk", "destination", F, f"{where}; even post-copy needs about {mib(lazy)}, "
                f"cold {mib(full)}", fix)]


STREAM_HALF: Final = "half of stream unix connection"  # criu/sk-unix.c, with --ext-unix-sk


def dump_row(ok: bool, freeze_ms: float | None, reason: str | None, log_path: str,
             image_bytes: int, *, credentials: str = "") -> Row:
    """The dry run's row; ``credentials``: a task whose credentials CRIU here cannot dump
    for want of CAP_SYS_RESOURCE (host/credentials.py), the likely cause of a failure."""
    froze = f"frozen {freeze_ms:.0f} ms" if freeze_ms is not None else "freeze not measured"
    if ok:
        return Row("dump", "source", P,
                   f"dry-run dump succeeded (criu dump --lazy-pages, declined at post-dump, "
                   f"no memory copied): {froze}, {mib(image_bytes)} of non-memory images")
    said = f"criu cannot dump it: {(reason or '?')[:200]} ({froze})"
    if credentials:
        return Row("dump", "source", F,
                   f"{said}: {credentials[:120]}, and CRIU here lacks CAP_SYS_RESOURCE, "
                   "without which it cannot dump a task running with other credentials",
                   "run the service as root with all its capabilities (its 'user root' "
                   "setting), or migrate from a host where CRIU has CAP_SYS_RESOURCE "
                   f"(log: {log_path})")
    if STREAM_HALF in (reason or ""):
        return Row("dump", "source", F, said,
                   "a stream socket connected to a process outside the tree cannot move "
                   "(nor by hand): migrate a parent of both ends, or start it with that "
                   "descriptor elsewhere (a systemd service's output: StandardOutput= and "
                   f"StandardError= null or file:PATH) (log: {log_path})")
    return Row("dump", "source", F, said, f"fix what CRIU names (log: {log_path})")


def postcopy_note() -> Row:
    return Row("postcopy.risk", "both", W, "post-copy: once committed, a broken link loses "
               "the workload (its memory is split between the nodes)",
               "prefer cold (or pre-copy) over an unreliable link", NOTE)


# -- each side's answer ------------------------------------------------------------------

def destination_rows(q: CheckQuery, d: DestinationFacts, source_node: str) -> list[Row]:
    node = d.criu.node
    w = q.workload
    return [
        *kernel_rows("destination", node, d.criu.features, w),
        cpu_row(d.cpu_problem, source_node, node),
        pid_row(w, d.taken_ids, q.omitted_ids, node),
        pty_row(w, d.taken_ptys, node),
        *network_rows(w, d.networks, d.bound, node),
        *file_rows(q, d.files, node),
        *lock_rows(w, d.files, d.locked_here, node),
        *unix_peer_rows(w, d.unix_unreachable, node),
        memory_row(w.rss_bytes, d.memory_available, node),
        *disk_rows(w.rss_bytes, d.disk_free, node,
                   streams=postcopy_blocker(d.criu.features, node) is None),
    ]


def source_rows(w: WorkloadFacts, here: NodeFacts, dest_criu_version: str, dest_node: str,
                dump: Row) -> list[Row]:
    return [
        workload_row(w),
        criu_row(here.criu_version, dest_criu_version, dest_node),
        *kernel_rows("source", here.node, here.features, w),
        dump,
        postcopy_note(),
    ]
