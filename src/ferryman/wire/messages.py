"""The control messages between the SOURCE (controller) and the DESTINATION agent.

Every message is a frozen, slotted dataclass checked on construction: a message object that
exists is well-formed. Checks raise :class:`~ferryman.errors.LocalProtocolError` (building a bad
message is our own bug); the decoder turns that into ``RemoteProtocolError`` for input from
the peer. Which message may be sent when is :mod:`ferryman.wire.states`'s business, not theirs.

Fields are typed exactly: an int field refuses ``bool`` and ``str``; mappings are copied into
read-only views (so ``Hello`` and ``Restored`` are not hashable). Bytes fields are left out of
``repr`` so a 4 MiB chunk never lands in a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from ferryman.errors import LocalProtocolError
from ferryman.mode import MODES, Mode
from ferryman.wire._checks import (
    bool_mapping,
    check_bool,
    check_bytes,
    check_file_name,
    check_int,
    check_str,
    check_text_bytes,
    int_mapping,
)
from ferryman.wire.limits import (
    BOOT_ID_RE,
    IP_TEXT_RE,
    MAX_CHUNK_BYTES,
    MAX_CPUINFO_BYTES,
    MAX_CRIU_VERSION_CHARS,
    MAX_ITERATIONS,
    MAX_LOG_TAIL_BYTES,
    MAX_NODE_CHARS,
    MAX_PROTOCOL_VERSION,
    MIGRATION_ID_RE,
    PID_MAX,
    PORT_MAX,
    SHA256_RE,
    check_code,
    check_json_text,
    check_text,
)

__all__ = [
    "MESSAGE_TYPES", "MODES", "Abort", "Aborted", "CheckReport", "CheckRequest", "Commit",
    "Committed", "Error", "Failed", "FileChunk", "FileEnd", "Hello", "Iterate", "LinkReport",
    "LinkTest", "Message", "PagesComplete", "Plan", "Ready", "Refused", "Restore", "Restored",
]

class Message:
    """Base class of the control messages. Don't subclass the concrete messages."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Versions and capabilities. The SOURCE sends it first, the DESTINATION answers in kind.

    ``features`` is CRIU's feature check (name -> present); ``cpuinfo`` is CRIU's
    ``CPUINFO_DUMP`` image; ``free_memory``/``free_disk`` are in bytes.
    """

    protocol_version: int
    node: str
    criu_version: str
    features: Mapping[str, bool]
    cpuinfo: bytes = field(repr=False)
    free_memory: int
    free_disk: int

    def __post_init__(self) -> None:
        check_int("Hello", "protocol_version", self.protocol_version, lo=1,
                  hi=MAX_PROTOCOL_VERSION)
        check_str("Hello", "node", self.node, min_chars=1, max_chars=MAX_NODE_CHARS)
        check_str("Hello", "criu_version", self.criu_version, max_chars=MAX_CRIU_VERSION_CHARS)
        object.__setattr__(self, "features", bool_mapping("Hello", "features", self.features))
        check_bytes("Hello", "cpuinfo", self.cpuinfo, max_len=MAX_CPUINFO_BYTES)
        check_int("Hello", "free_memory", self.free_memory)
        check_int("Hello", "free_disk", self.free_disk)


@dataclass(frozen=True, slots=True)
class CheckRequest(Message):
    """SOURCE, after Hello: check whether this workload can move here (pre-flight).

    ``query`` is JSON text (see :mod:`ferryman.migration.query`); its reader validates it.
    """

    query: str

    def __post_init__(self) -> None:
        check_json_text("CheckRequest", "query", self.query)


@dataclass(frozen=True, slots=True)
class CheckReport(Message):
    """DESTINATION: its pre-flight rows as JSON text (see :mod:`ferryman.migration.verdict`)."""

    result: str

    def __post_init__(self) -> None:
        check_json_text("CheckReport", "result", self.result)


@dataclass(frozen=True, slots=True)
class LinkTest(Message):
    """SOURCE, after Hello: filler that times the link (``--mode auto``), answered by a
    LinkReport; the source times a small and a large one and divides."""

    payload: bytes

    def __post_init__(self) -> None:
        check_bytes("LinkTest", "payload", self.payload, max_len=MAX_CHUNK_BYTES)


@dataclass(frozen=True, slots=True)
class LinkReport(Message):
    """DESTINATION: how many payload bytes its LinkTest carried (a check on the count)."""

    bytes: int

    def __post_init__(self) -> None:
        check_int("LinkReport", "bytes", self.bytes)


@dataclass(frozen=True, slots=True)
class Plan(Message):
    """SOURCE: what will move and how. ``lazy`` means the restore fetches pages on demand.

    ``lazy`` is :attr:`Mode.lazy_from_start`: post-copy is lazy from the start; the pre-copying
    modes stream image sets through :class:`Iterate`, whose last one may turn lazy. ``mode``
    travels as the member's value (a string) and is a :class:`~ferryman.mode.Mode` once built.
    """

    migration_id: str
    mode: Mode
    pid: int
    lazy: bool
    tcp_established: bool = False  # dump and restore live TCP connections
    move_address: str = ""  # "IP/PREFIX@DEV": goes down at the source, up at the destination
    target: str = ""  # a container (JSON, see ferryman.agent.container); "" for a process tree
    # lazy: the port the source's page server will listen on (the destination may start its
    # lazy-pages daemon as soon as the images it reads first have arrived); 0: told at Restore
    page_server_port: int = 0
    # cold: the pages come LZ4-compressed through ferryman's page relay (agent/pagerelay.py);
    # Ready's page_server_port is then the relay's TLS port
    compress: bool = False
    # post-copy, and hybrid's final step if it turns lazy: the lazy pages come through
    # ferryman's page relay (LZ4-compressed if ``compress``), not CRIU's own TLS: the Ready
    # of the lazy dump (the Plan's, or the final Iterate's) names the relay's TLS port, which
    # the source connects to; the source's lazy dump then listens on no port
    lazy_relay: bool = False
    # the tree's resident memory at the plan (bytes): what the destination makes resident
    # before the freeze where its hypervisor takes free memory (serve --prefault)
    rss_bytes: int = 0
    # cold: the dump is lazy and the destination fetches every page into the restored tree,
    # held stopped, before it says Restored (no page files); the wire then runs as post-copy's
    # (Committed, then PagesComplete), but nothing is lost if the link breaks: the source keeps
    # its copy until the commit, and the destination has the whole memory before it
    streamed: bool = False

    def __post_init__(self) -> None:
        check_str("Plan", "migration_id", self.migration_id, max_chars=64,
                  pattern=MIGRATION_ID_RE)
        if type(self.mode) is not Mode:
            check_str("Plan", "mode", self.mode, max_chars=16)
        if self.mode not in MODES:
            raise LocalProtocolError(f"Plan.mode must be one of {tuple(map(str, MODES))}, "
                                     f"got {self.mode!r}")
        object.__setattr__(self, "mode", Mode(self.mode))
        check_int("Plan", "pid", self.pid, lo=1, hi=PID_MAX)
        check_bool("Plan", "lazy", self.lazy)
        check_bool("Plan", "tcp_established", self.tcp_established)
        check_bool("Plan", "compress", self.compress)
        check_bool("Plan", "lazy_relay", self.lazy_relay)
        check_bool("Plan", "streamed", self.streamed)
        check_int("Plan", "rss_bytes", self.rss_bytes)
        check_str("Plan", "move_address", self.move_address, max_chars=64)
        check_int("Plan", "page_server_port", self.page_server_port, hi=PORT_MAX)
        check_json_text("Plan", "target", self.target)
        if self.lazy is not self.mode.lazy_from_start:
            raise LocalProtocolError(f"Plan.lazy must be {self.mode.lazy_from_start} in "
                                     f"{self.mode} mode")
        if self.streamed and self.mode is not Mode.COLD:
            raise LocalProtocolError(f"Plan.streamed is a cold restore's, not {self.mode}'s")
        if self.lazy_relay and not (self.mode.lazy or self.streamed):
            raise LocalProtocolError(f"Plan.lazy_relay needs a mode that can turn lazy, "
                                     f"not {self.mode}")

    @property
    def lazy_dump(self) -> bool:
        """The Plan's own dump is lazy: post-copy's, or a streamed cold one."""
        return self.lazy or self.streamed


@dataclass(frozen=True, slots=True)
class Ready(Message):
    """DESTINATION accepts the plan, or opens the next image set (pre-copy).

    ``page_server_port`` 0 means no page server. ``restore_bytes_per_s`` (pre-copy, once the
    first set is in, else 0): how fast this node reads that set's pages back, which is what
    the final restore spends most of its time on. ``sync_port``: its directory-sync listener
    for a container's files (0: none). ``pages_from``: the address this node's lazy-pages
    daemon connects from (its route's source address toward the source; "" unknown): the
    source admits only that one to its lazy page server. ``prefault_bytes`` and
    ``prefault_ms``: the memory this node holds resident for the plan's frozen window
    (``serve --prefault``), and how long making memory resident took before answering
    (0 bytes after some ms: it came resident at memory speed and was given back).
    """

    page_server_port: int
    restore_bytes_per_s: int = 0
    sync_port: int = 0
    pages_from: str = ""
    prefault_bytes: int = 0
    prefault_ms: int = 0

    def __post_init__(self) -> None:
        check_int("Ready", "page_server_port", self.page_server_port, hi=PORT_MAX)
        check_int("Ready", "restore_bytes_per_s", self.restore_bytes_per_s)
        check_int("Ready", "sync_port", self.sync_port, hi=PORT_MAX)
        check_str("Ready", "pages_from", self.pages_from, max_chars=45, pattern=IP_TEXT_RE)
        check_int("Ready", "prefault_bytes", self.prefault_bytes)
        check_int("Ready", "prefault_ms", self.prefault_ms)


@dataclass(frozen=True, slots=True)
class Iterate(Message):
    """SOURCE, pre-copy: image set ``index`` comes next; answered by a Ready for it.

    Sets 1, 2, ... are pre-dumps, each the child of the one before; the Plan's Ready already
    served set 1. ``final``: this set is the last (the dump that freezes); ``lazy`` (final only):
    its memory stays at the source and is fetched on demand, so the Ready carries port 0.
    """

    index: int
    final: bool = False
    lazy: bool = False

    def __post_init__(self) -> None:
        check_int("Iterate", "index", self.index, lo=2, hi=MAX_ITERATIONS + 1)
        check_bool("Iterate", "final", self.final)
        check_bool("Iterate", "lazy", self.lazy)
        if self.lazy and not self.final:
            raise LocalProtocolError("Iterate.lazy needs final: only the last set can be lazy")


@dataclass(frozen=True, slots=True)
class Refused(Message):
    """DESTINATION declines the plan; the conversation is over and nothing was frozen."""

    code: str
    message: str

    def __post_init__(self) -> None:
        check_code("Refused", self.code)
        check_text("Refused", "message", self.message)


@dataclass(frozen=True, slots=True)
class FileChunk(Message):
    """SOURCE: ``data`` goes at ``offset`` of image file ``name``. Files may interleave."""

    name: str
    offset: int
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_file_name("FileChunk", "name", self.name)
        check_int("FileChunk", "offset", self.offset)
        check_bytes("FileChunk", "data", self.data, max_len=MAX_CHUNK_BYTES)


@dataclass(frozen=True, slots=True)
class FileEnd(Message):
    """SOURCE: image file ``name`` is complete; its ``size`` and SHA-256 (lowercase hex)."""

    name: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        check_file_name("FileEnd", "name", self.name)
        check_int("FileEnd", "size", self.size)
        check_str("FileEnd", "sha256", self.sha256, max_chars=64, pattern=SHA256_RE)


@dataclass(frozen=True, slots=True)
class Restore(Message):
    """SOURCE: all images are sent (``file_count`` files, ``total_bytes``); restore now.

    ``page_server_port``: in lazy mode, the port of the source's page server (on the source's
    end of this connection) from which the destination fetches the remaining pages; else 0.

    ``kernel`` (the source's boot id) and ``fifo_devices`` (inode -> device, as decimal text ->
    int, of the FIFOs with unread data that the frozen tree holds): a destination on the same
    kernel that sees the same inode at the FIFO's path opens the very pipe the source still
    holds, data included (agent/fifos.py). Empty when there are none.
    """

    file_count: int
    total_bytes: int
    page_server_port: int = 0
    kernel: str = ""
    fifo_devices: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("Restore", "file_count", self.file_count)
        check_int("Restore", "total_bytes", self.total_bytes)
        check_int("Restore", "page_server_port", self.page_server_port, hi=65535)
        check_str("Restore", "kernel", self.kernel, max_chars=36, pattern=BOOT_ID_RE)
        object.__setattr__(self, "fifo_devices",
                           int_mapping("Restore", "fifo_devices", self.fifo_devices))


@dataclass(frozen=True, slots=True)
class Restored(Message):
    """DESTINATION: the tree is restored and left stopped as ``pid``; CRIU's ``stats``."""

    pid: int
    stats: Mapping[str, int]

    def __post_init__(self) -> None:
        check_int("Restored", "pid", self.pid, lo=1, hi=PID_MAX)
        object.__setattr__(self, "stats", int_mapping("Restored", "stats", self.stats))


@dataclass(frozen=True, slots=True)
class Failed(Message):
    """DESTINATION: the restore failed and was cleaned up; ``log_tail`` is CRIU's log end."""

    code: str
    message: str
    log_tail: str

    def __post_init__(self) -> None:
        check_code("Failed", self.code)
        check_text("Failed", "message", self.message)
        check_text_bytes("Failed", "log_tail", self.log_tail, max_bytes=MAX_LOG_TAIL_BYTES)


@dataclass(frozen=True, slots=True)
class Commit(Message):
    """SOURCE: point of no return passed, its copy is destroyed; resume the workload."""


@dataclass(frozen=True, slots=True)
class Abort(Message):
    """SOURCE: roll back; the destination kills what it restored and deletes its images."""

    reason: str

    def __post_init__(self) -> None:
        check_text("Abort", "reason", self.reason)


@dataclass(frozen=True, slots=True)
class Committed(Message):
    """DESTINATION: the workload runs here as ``pid``."""

    pid: int

    def __post_init__(self) -> None:
        check_int("Committed", "pid", self.pid, lo=1, hi=PID_MAX)


@dataclass(frozen=True, slots=True)
class Aborted(Message):
    """DESTINATION: the rollback is done; nothing of the workload is left here."""


@dataclass(frozen=True, slots=True)
class PagesComplete(Message):
    """DESTINATION, post-copy only: every page has arrived; the source may exit.

    ``faults``: page faults the workload took (each served on demand); the rest of the pages
    were pushed in the background. ``fault_wait_ms``: the time its threads spent waiting on
    those faults after the resume, all together; ``fault_max_ms``: the longest single wait
    (both measured by the lazy-pages daemon that served them).
    """

    pages: int
    bytes: int
    elapsed_ms: int
    faults: int = 0
    fault_wait_ms: int = 0
    fault_max_ms: int = 0

    def __post_init__(self) -> None:
        check_int("PagesComplete", "pages", self.pages)
        check_int("PagesComplete", "bytes", self.bytes)
        check_int("PagesComplete", "elapsed_ms", self.elapsed_ms)
        check_int("PagesComplete", "faults", self.faults)
        check_int("PagesComplete", "fault_wait_ms", self.fault_wait_ms)
        check_int("PagesComplete", "fault_max_ms", self.fault_max_ms)


@dataclass(frozen=True, slots=True)
class Error(Message):
    """Either side, any time before the end: the conversation is over, for ``code``."""

    code: str
    message: str

    def __post_init__(self) -> None:
        check_code("Error", self.code)
        check_text("Error", "message", self.message)


MESSAGE_TYPES: Final[Mapping[str, type[Message]]] = MappingProxyType({
    cls.__name__: cls
    for cls in (Hello, Plan, Ready, Iterate, Refused, FileChunk, FileEnd, Restore, Restored, Failed,
                Commit, Abort, Committed, Aborted, PagesComplete, Error, CheckRequest,
                CheckReport, LinkTest, LinkReport)
})
"""Every message class by its wire name (the ``type`` in the frame header)."""
