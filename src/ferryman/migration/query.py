"""The pre-flight query: what the source tells the destination about a workload, as JSON.

Pure. :func:`encode_query` fits the facts into a byte budget (the frame header's room), giving
up file mappings first, then open files, then thread ids, and saying how many it left out;
:func:`decode_query` checks every field of what arrived and raises RemoteProtocolError on
anything unexpected (the text came off the network).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from ferryman.errors import RemoteProtocolError
from ferryman.host.inspect import (
    FILE_KINDS,
    FILE_TYPES,
    MAX_PTY,
    FileRef,
    FileStat,
    WorkloadFacts,
)
from ferryman.host.netinfo import TCP_STATES, InetSocket

QUERY_VERSION: Final = 5  # 2: files carry identity and liveness; 3: the workload's ptys;
# 4: the files it holds locks on; 5: the datagram sockets outside it it is connected to
MAX_PATH_CHARS: Final = 4096
MAX_ITEMS: Final = 100_000
MAX_INT: Final = 2**63 - 1
MAX_U64: Final = 2**64 - 1
PID_MAX: Final = 1 << 22
_STATES: Final = frozenset({*TCP_STATES.values(), "BOUND"})
_WORKLOAD_KEYS: Final = ("pid", "comm", "processes", "own_pid_ns", "own_net_ns", "own_time_ns",
                         "rss", "deleted_files")
_KEYS: Final = {"v", "workload", "ids", "files", "sockets", "synced", "omitted_files",
                "omitted_ids", "ptys", "locked", "unix_peers"}


@dataclass(frozen=True, slots=True)
class CheckQuery:
    """The workload as the destination sees it; ``omitted_*`` did not fit in the query."""

    workload: WorkloadFacts
    synced: tuple[str, ...] = ()
    omitted_files: int = 0
    omitted_ids: int = 0


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _to_obj(q: CheckQuery) -> dict[str, object]:
    w = q.workload
    return {
        "v": QUERY_VERSION,
        "workload": {"pid": w.pid, "comm": w.comm, "processes": w.processes,
                     "own_pid_ns": w.own_pid_ns, "own_net_ns": w.own_net_ns,
                     "own_time_ns": w.own_time_ns, "rss": w.rss_bytes,
                     "deleted_files": w.deleted_files},
        "ids": list(w.ids),
        "ptys": list(w.ptys),
        "locked": list(w.locked_files),
        "unix_peers": list(w.unix_peers),
        "files": [[f.path, f.kind, f.stat.ftype, f.stat.size, f.stat.mtime_ns, f.stat.fsid,
                   f.stat.dev, f.stat.ino, f.live] for f in w.files],
        "sockets": [[s.proto, s.local_ip, s.local_port, s.remote_ip, s.remote_port, s.state]
                    for s in w.sockets],
        "synced": list(q.synced),
        "omitted_files": q.omitted_files,
        "omitted_ids": q.omitted_ids,
    }


def encode_query(workload: WorkloadFacts, synced: Sequence[str], *, budget: int) -> str:
    """The query text; its JSON-escaped UTF-8 form fits in ``budget`` bytes."""

    def size(q: CheckQuery) -> int:
        return len(json.dumps(_dumps(_to_obj(q)), ensure_ascii=False).encode("utf-8"))

    q = CheckQuery(workload, tuple(synced))
    for kind in ("map", "fd", "cwd", "exe"):
        if size(q) <= budget:
            return _dumps(_to_obj(q))
        files = q.workload.files
        kept = tuple(f for f in files if f.kind != kind)
        q = replace(q, workload=replace(q.workload, files=kept),
                    omitted_files=q.omitted_files + len(files) - len(kept))
    ids = q.workload.ids
    while size(q) > budget and ids:
        ids = ids[: len(ids) // 2]
        q = replace(q, workload=replace(q.workload, ids=ids),
                    omitted_ids=len(workload.ids) - len(ids))
    if size(q) > budget:
        raise ValueError(f"a pre-flight query does not fit in {budget} bytes")
    return _dumps(_to_obj(q))


# -- decoding (input from the network) ----------------------------------------------------

def _bad(why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad CheckRequest: {why}")


def _int(value: object, what: str, hi: int = MAX_INT) -> int:
    if type(value) is not int or not 0 <= value <= hi:
        raise _bad(f"{what} must be an int in [0, {hi}]")
    return value


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise _bad(f"{what} must be a bool")
    return value


def _str(value: object, what: str, max_chars: int = MAX_PATH_CHARS) -> str:
    if not isinstance(value, str) or len(value) > max_chars or "\0" in value:
        raise _bad(f"{what} must be a string of at most {max_chars} characters")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise _bad(f"{what} must be a list of at most {MAX_ITEMS} items")
    return value


def _path(value: object, what: str) -> str:
    path = _str(value, what)
    if not path.startswith("/"):
        raise _bad(f"{what} must be an absolute path")
    return path


def _socket_name(value: object) -> str:
    name = _str(value, "unix socket name")
    if not name.startswith(("/", "@")):
        raise _bad("a unix socket name must be an absolute path or @ and an abstract name")
    return name


def _ip(value: object, what: str) -> str:
    text = _str(value, what, 64)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise _bad(f"{what} is not an IP address") from exc


def _file(item: object) -> FileRef:
    row = _list(item, "a file")
    if len(row) != 9:
        raise _bad("a file is [path, kind, type, size, mtime_ns, fsid, dev, ino, live]")
    path, kind, ftype, size, mtime, fsid, dev, ino, live = row
    if kind not in FILE_KINDS or ftype not in FILE_TYPES:
        raise _bad(f"bad file kind or type: {kind!r:.20} {ftype!r:.20}")
    stat = FileStat(str(ftype), _int(size, "file size"), _int(mtime, "file mtime"),
                    _int(fsid, "file fsid", MAX_U64), _int(dev, "file dev", MAX_U64),
                    _int(ino, "file inode", MAX_U64))
    return FileRef(_path(path, "file path"), str(kind), stat, _bool(live, "file live"))


def _socket(item: object) -> InetSocket:
    row = _list(item, "a socket")
    if len(row) != 6:
        raise _bad("a socket is [proto, local ip, port, remote ip, port, state]")
    proto, lip, lport, rip, rport, state = row
    if proto not in ("tcp", "udp") or not isinstance(state, str) or state not in _STATES:
        raise _bad(f"bad socket protocol or state: {proto!r:.20} {state!r:.20}")
    return InetSocket(str(proto), _ip(lip, "local ip"), _int(lport, "port", 0xFFFF),
                      _ip(rip, "remote ip"), _int(rport, "port", 0xFFFF), str(state))


def decode_query(text: str) -> CheckQuery:
    """The query in a CheckRequest; RemoteProtocolError when it is malformed."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != _KEYS:
        raise _bad(f"must be an object with keys {sorted(_KEYS)}")
    if obj["v"] != QUERY_VERSION:
        raise _bad(f"unknown version {obj['v']!r:.20}")
    w = obj["workload"]
    if not isinstance(w, dict) or set(w) != set(_WORKLOAD_KEYS):
        raise _bad(f"workload must have keys {list(_WORKLOAD_KEYS)}")
    facts = WorkloadFacts(
        pid=_int(w["pid"], "pid", PID_MAX),
        comm=_str(w["comm"], "comm", 64),
        processes=_int(w["processes"], "processes", PID_MAX),
        ids=tuple(_int(i, "id", PID_MAX) for i in _list(obj["ids"], "ids")),
        own_pid_ns=_bool(w["own_pid_ns"], "own_pid_ns"),
        own_net_ns=_bool(w["own_net_ns"], "own_net_ns"),
        own_time_ns=_bool(w["own_time_ns"], "own_time_ns"),
        rss_bytes=_int(w["rss"], "rss"),
        files=tuple(_file(f) for f in _list(obj["files"], "files")),
        sockets=tuple(_socket(s) for s in _list(obj["sockets"], "sockets")),
        deleted_files=_int(w["deleted_files"], "deleted_files"),
        ptys=tuple(_int(n, "pty", MAX_PTY - 1) for n in _list(obj["ptys"], "ptys")),
        locked_files=tuple(_path(p, "locked file") for p in _list(obj["locked"], "locked")),
        unix_peers=tuple(_socket_name(n) for n in _list(obj["unix_peers"], "unix_peers")),
    )
    synced = tuple(_path(p, "synced path") for p in _list(obj["synced"], "synced"))
    return CheckQuery(facts, synced, _int(obj["omitted_files"], "omitted_files"),
                      _int(obj["omitted_ids"], "omitted_ids"))
