"""Sample messages, hypothesis strategies and conversation helpers for the wire tests."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

from hypothesis import strategies as st

from ferryman.mode import MODES
from ferryman.wire import (
    LAZY_TRANSITIONS,
    MESSAGE_TYPES,
    NEED_DATA,
    TRANSITIONS,
    Abort,
    Aborted,
    CheckReport,
    CheckRequest,
    Commit,
    Committed,
    Connection,
    Error,
    Failed,
    FileChunk,
    FileEnd,
    Hello,
    Iterate,
    LinkReport,
    LinkTest,
    Message,
    PagesComplete,
    Plan,
    Ready,
    Refused,
    Restore,
    Restored,
    Role,
    State,
    encode,
    next_state,
)
from ferryman.wire._checks import KEY_RE, MAX_INT
from ferryman.wire.limits import CODE_RE, MIGRATION_ID_RE, PID_MAX

Step = tuple[Role, type[Message]]
Key = tuple[State, Role, type[Message]]

# ----------------------------------------------------------------------------- samples

COLD_PLAN = Plan("m-1", "cold", 4242, lazy=False)
LAZY_PLAN = Plan("m-2", "postcopy", 4242, lazy=True)

SAMPLES: dict[type[Message], Message] = {
    Hello: Hello(1, "node-a", "4.2.1", {"mem_track": False, "lazy_pages": True},
                 b"\x00cpuinfo\xff", 1 << 30, 1 << 40),
    Plan: COLD_PLAN,
    Ready: Ready(40123),
    Iterate: Iterate(2),
    Refused: Refused("incompatible", "CRIU too old"),
    FileChunk: FileChunk("pages-1.img", 0, b"\x00\x01" * 100),
    FileEnd: FileEnd("pages-1.img", 200, "ab" * 32),
    Restore: Restore(1, 200, 0, "8d425eef-e4f2-4a08-bfed-e399f68725ff", {"2148344": 66}),
    Restored: Restored(777, {"restore_time": 1234, "forking_time": 5}),
    Failed: Failed("restore_failed", "criu restore failed", "(00.1) Error: ...\n"),
    Commit: Commit(),
    Abort: Abort("user interrupt"),
    Committed: Committed(777),
    Aborted: Aborted(),
    PagesComplete: PagesComplete(65536, 1 << 28, 1500),
    Error: Error("internal", "something broke"),
    CheckRequest: CheckRequest('{"v":1,"workload":{"pid":4242}}'),
    CheckReport: CheckReport('{"v":1,"rows":[]}'),
    LinkTest: LinkTest(b"\x00" * 1000),
    LinkReport: LinkReport(1000),
}
assert set(SAMPLES) == set(MESSAGE_TYPES.values())


def sample(cls: type[Message], *, lazy: bool = False) -> Message:
    if cls is Plan:
        return LAZY_PLAN if lazy else COLD_PLAN
    return SAMPLES[cls]


# ----------------------------------------------------------------------------- strategies

u64 = st.integers(0, MAX_INT)
pids = st.integers(1, PID_MAX)
texts = st.text(max_size=100)
codes = st.from_regex(CODE_RE, fullmatch=True)
keys = st.from_regex(KEY_RE, fullmatch=True)
file_names = st.text(min_size=1, max_size=40).filter(
    lambda s: "/" not in s and "\0" not in s and s not in (".", "..")
    and len(s.encode("utf-8", "surrogatepass")) <= 255
)
sha256s = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)

MESSAGE_STRATEGIES: dict[type[Message], st.SearchStrategy[Message]] = {
    Hello: st.builds(Hello, st.integers(1, 0xFFFF), st.text(min_size=1, max_size=40),
                     st.text(max_size=20), st.dictionaries(keys, st.booleans(), max_size=8),
                     st.binary(max_size=300), u64, u64),
    Plan: st.one_of(
        st.builds(Plan, st.from_regex(MIGRATION_ID_RE, fullmatch=True),
                  st.sampled_from(["cold", "precopy", "hybrid"]), pids, st.just(False)),
        st.builds(Plan, st.from_regex(MIGRATION_ID_RE, fullmatch=True),
                  st.just("postcopy"), pids, st.just(True)),
    ),
    Ready: st.builds(Ready, st.integers(0, 0xFFFF), u64),
    Iterate: st.one_of(st.builds(Iterate, st.integers(2, 1001), st.booleans()),
                       st.builds(Iterate, st.integers(2, 1001), st.just(True), st.just(True))),
    Refused: st.builds(Refused, codes, texts),
    FileChunk: st.builds(FileChunk, file_names, u64, st.binary(max_size=300)),
    FileEnd: st.builds(FileEnd, file_names, u64, sha256s),
    Restore: st.builds(Restore, u64, u64, st.integers(0, 65535), st.uuids().map(str),
                       st.dictionaries(st.integers(1, 2**32).map(str), u64, max_size=8)),
    Restored: st.builds(Restored, pids, st.dictionaries(keys, u64, max_size=8)),
    Failed: st.builds(Failed, codes, texts, st.text(max_size=300)),
    Commit: st.builds(Commit),
    Abort: st.builds(Abort, texts),
    Committed: st.builds(Committed, pids),
    Aborted: st.builds(Aborted),
    PagesComplete: st.builds(PagesComplete, u64, u64, u64, u64),
    Error: st.builds(Error, codes, texts),
    CheckRequest: st.builds(CheckRequest, st.text(max_size=300)),
    CheckReport: st.builds(CheckReport, st.text(max_size=300)),
    LinkTest: st.builds(LinkTest, st.binary(max_size=300)),
    LinkReport: st.builds(LinkReport, u64),
}
assert set(MESSAGE_STRATEGIES) == set(MESSAGE_TYPES.values())
assert MODES == ("cold", "postcopy", "precopy", "hybrid")

any_message = st.one_of(*MESSAGE_STRATEGIES.values())


# ----------------------------------------------------------------------------- table walks

def _edges(state: State, *, lazy: bool) -> Iterator[tuple[Step, State]]:
    keys_ = [k for k in (*TRANSITIONS, *LAZY_TRANSITIONS) if k[0] is state]
    for _, sender, msg_type in dict.fromkeys(keys_):
        target = next_state(state, sender, msg_type, lazy=lazy)
        assert target is not None
        yield (sender, msg_type), target


def shortest_paths() -> dict[State, tuple[bool, list[Step]]]:
    """For every reachable state: (lazy, the shortest path of steps from IDLE to it)."""
    found: dict[State, tuple[bool, list[Step]]] = {}
    for lazy in (False, True):
        seen = {State.IDLE: list[Step]()}
        queue = deque([State.IDLE])
        while queue:
            state = queue.popleft()
            for step, target in _edges(state, lazy=lazy):
                if target not in seen:
                    seen[target] = [*seen[state], step]
                    queue.append(target)
        for state, path in seen.items():
            found.setdefault(state, (lazy, path))
    return found


def all_conversations() -> list[tuple[bool, list[Step], State]]:
    """Every conversation from IDLE to a final state that uses no table entry twice."""
    out: list[tuple[bool, list[Step], State]] = []

    def walk(lazy: bool, state: State, path: list[Step], used: frozenset[Key]) -> None:
        if state in (State.DONE, State.CLOSED, State.ERROR):
            out.append((lazy, path, state))
            return
        for step, target in _edges(state, lazy=lazy):
            key = (state, *step)
            if key not in used:
                walk(lazy, target, [*path, step], used | {key})

    for lazy in (False, True):
        walk(lazy, State.IDLE, [], frozenset())
    return out


# ----------------------------------------------------------------------------- driving

def drive(conn: Connection, path: Sequence[Step], *, lazy: bool) -> None:
    """Replay ``path`` on one connection: send our steps, receive the peer's."""
    for sender, msg_type in path:
        msg = sample(msg_type, lazy=lazy)
        if sender is conn.our_role:
            conn.send(msg)
        else:
            conn.receive_data(encode(msg))
            assert conn.next_event() == msg


class Pair:
    """A SOURCE and a DESTINATION connection wired to each other."""

    def __init__(self) -> None:
        self.source = Connection(Role.SOURCE)
        self.destination = Connection(Role.DESTINATION)

    def conn(self, role: Role) -> Connection:
        return self.source if role is Role.SOURCE else self.destination

    def step(self, sender: Role, msg: Message) -> None:
        data = self.conn(sender).send(msg)
        receiver = self.conn(sender.peer)
        receiver.receive_data(data)
        assert receiver.next_event() == msg
        assert receiver.next_event() is NEED_DATA
        assert receiver.state is self.conn(sender).state

    @property
    def state(self) -> State:
        assert self.source.state is self.destination.state
        return self.source.state
