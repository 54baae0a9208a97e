"""Connection: conversations between a pair, illegal steps, end of file, breakage."""

from __future__ import annotations

import struct

import pytest

from ferryman.errors import LocalProtocolError, RemoteProtocolError
from ferryman.wire import (
    FINAL_STATES,
    LAZY_TRANSITIONS,
    MESSAGE_TYPES,
    NEED_DATA,
    TRANSITIONS,
    Abort,
    Aborted,
    Commit,
    Committed,
    Connection,
    ConnectionClosed,
    Error,
    Failed,
    FileChunk,
    FileEnd,
    Hello,
    Iterate,
    Message,
    PagesComplete,
    Plan,
    Ready,
    Restore,
    Restored,
    Role,
    State,
    encode,
    next_state,
)

from .helpers import (
    COLD_PLAN,
    LAZY_PLAN,
    SAMPLES,
    Pair,
    all_conversations,
    drive,
    sample,
    shortest_paths,
)

S, D = Role.SOURCE, Role.DESTINATION
PATHS = shortest_paths()
CONVERSATIONS = all_conversations()


def _name(x: State | Role) -> str:
    return x.name


def at(state: State, role: Role) -> tuple[Connection, bool]:
    """A fresh ``role`` connection driven to ``state``, and whether its plan is lazy."""
    lazy, path = PATHS[state]
    conn = Connection(role)
    drive(conn, path, lazy=lazy)
    assert conn.state is state
    return conn, lazy


# ----------------------------------------------------------------------------- conversations

def _conv_id(conv: tuple[bool, list[tuple[Role, type[Message]]], State]) -> str:
    lazy, path, _ = conv
    steps = "-".join(("" if r is S else "<") + t.__name__ for r, t in path)
    return f"{'lazy' if lazy else 'cold'}:{steps}"


@pytest.mark.parametrize("conv", CONVERSATIONS, ids=[_conv_id(c) for c in CONVERSATIONS])
def test_every_legal_conversation(
    conv: tuple[bool, list[tuple[Role, type[Message]]], State],
) -> None:
    lazy, path, end = conv
    pair = Pair()
    for sender, msg_type in path:
        pair.step(sender, sample(msg_type, lazy=lazy))
    assert pair.state is end
    for conn in (pair.source, pair.destination):
        conn.receive_data(b"")
        assert conn.next_event() == ConnectionClosed()
        assert conn.next_event() == ConnectionClosed()


def test_conversation_enumeration_covers_the_brief() -> None:
    ends = {(lazy, tuple(t for _, t in path), end) for lazy, path, end in CONVERSATIONS}
    happy = (Hello, Hello, Plan, Ready, FileChunk, FileEnd, Restore, Restored, Commit, Committed)
    assert (False, happy, State.DONE) in ends
    assert (True, (*happy, PagesComplete), State.DONE) in ends
    # an error from each side at every non-final state, and abort at every allowed point
    erred = {(path[-1][0], _state_before_last(lazy, path)) for lazy, path, end in CONVERSATIONS
             if end is State.ERROR}
    assert erred == {(r, s) for s in State if s not in FINAL_STATES for r in Role}
    aborted = {_state_before_last(lazy, path[: [t for _, t in path].index(Abort) + 1])
               for lazy, path, _ in CONVERSATIONS if any(t is Abort for _, t in path)}
    assert aborted == {State.GREETED, State.READY, State.TRANSFERRING, State.TRANSFER_FAILED,
                       State.RESTORING, State.RESTORED, State.FAILED}


def _state_before_last(lazy: bool, path: list[tuple[Role, type[Message]]]) -> State:
    state = State.IDLE
    for sender, msg_type in path[:-1]:
        nxt = next_state(state, sender, msg_type, lazy=lazy)
        assert nxt is not None
        state = nxt
    return state


def test_interleaved_files() -> None:
    pair = _to_ready(COLD_PLAN)
    for msg in [FileChunk("a.img", 0, b"aa"), FileChunk("b.img", 0, b"bb"),
                FileChunk("a.img", 2, b"aa"), FileEnd("b.img", 2, "0" * 64),
                FileChunk("c.img", 0, b""), FileEnd("a.img", 4, "1" * 64),
                FileEnd("c.img", 0, "2" * 64), Restore(3, 6)]:
        pair.step(S, msg)
    assert pair.state is State.RESTORING


def _to_ready(plan: Plan) -> Pair:
    pair = Pair()
    pair.step(S, SAMPLES[Hello])
    pair.step(D, SAMPLES[Hello])
    pair.step(S, plan)
    pair.step(D, Ready(0))
    assert pair.source.plan == pair.destination.plan == plan
    return pair


@pytest.mark.parametrize("result", [Restored(9, {}), Failed("x", "y", "z")], ids=repr)
def test_abort_crossing_the_restore_result(result: Message) -> None:
    pair = _to_ready(COLD_PLAN)
    pair.step(S, Restore(0, 0))
    abort = pair.source.send(Abort("operator"))  # both send before either reads
    reply = pair.destination.send(result)
    pair.source.receive_data(reply)
    pair.destination.receive_data(abort)
    assert pair.source.next_event() == result
    assert pair.destination.next_event() == Abort("operator")
    assert pair.source.state is pair.destination.state is State.ABORTING
    pair.step(D, Aborted())
    assert pair.state is State.CLOSED


def _bad_file_reported() -> tuple[Pair, bytes]:
    """Files streaming; the destination has sent Failed about one, unread by the source."""
    pair = _to_ready(COLD_PLAN)
    pair.step(S, FileChunk("a.img", 0, b"aa"))
    failed = pair.destination.send(Failed("checksum", "a.img: size or SHA-256 mismatch", ""))
    assert pair.destination.state is State.TRANSFER_FAILED
    return pair, failed


def test_a_transfer_failure_reaches_a_source_still_sending() -> None:
    """The source sent more files and its Restore before reading the Failed: the destination
    reads them and discards them; the source reads the Failed in RESTORING and aborts."""
    pair, failed = _bad_file_reported()
    in_flight = b"".join(pair.source.send(m) for m in (
        FileEnd("a.img", 2, "0" * 64), FileChunk("b.img", 0, b"bb"), Restore(2, 4)))
    pair.destination.receive_data(in_flight)
    for _ in range(3):
        assert pair.destination.next_event() is not NEED_DATA
    assert pair.destination.state is State.FAILED
    pair.source.receive_data(failed)
    assert isinstance(pair.source.next_event(), Failed)
    assert pair.source.state is State.FAILED
    pair.step(S, Abort("the destination failed"))
    pair.step(D, Aborted())
    assert pair.state is State.CLOSED


def test_abort_crossing_a_transfer_failure() -> None:
    pair, failed = _bad_file_reported()
    abort = pair.source.send(Abort("operator"))
    assert pair.source.state is State.ABORTING_TRANSFER
    pair.source.receive_data(failed)
    pair.destination.receive_data(abort)
    assert isinstance(pair.source.next_event(), Failed)
    assert pair.destination.next_event() == Abort("operator")
    assert pair.source.state is pair.destination.state is State.ABORTING
    pair.step(D, Aborted())
    assert pair.state is State.CLOSED


@pytest.mark.parametrize("plan", [LAZY_PLAN, Plan("mig-1", "cold", 1, False, streamed=True)],
                         ids=["postcopy", "streamed cold"])
def test_lazy_commit_waits_for_pages(plan: Plan) -> None:
    """A streamed cold restore's PagesComplete reports the fetch done before Restored."""
    pair = _to_ready(plan)
    pair.step(S, Restore(0, 0))
    pair.step(D, Restored(9, {}))
    pair.step(S, Commit())
    pair.step(D, Committed(9))
    assert pair.state is State.FETCHING
    pair.step(D, PagesComplete(1, 4096, 3))
    assert pair.destination.state is State.DONE


def test_byte_at_a_time_gives_the_same_events() -> None:
    lazy, path, _ = next(c for c in CONVERSATIONS if c[2] is State.DONE and c[0])
    conns = {S: Connection(S), D: Connection(D)}
    for sender, msg_type in path:
        msg = sample(msg_type, lazy=lazy)
        data, receiver = conns[sender].send(msg), conns[sender.peer]
        for i in range(len(data) - 1):
            receiver.receive_data(data[i : i + 1])
            assert receiver.next_event() is NEED_DATA
        receiver.receive_data(data[-1:])
        assert receiver.next_event() == msg
    assert conns[S].state is conns[D].state is State.DONE


# ----------------------------------------------------------------------------- illegal steps

LEGAL = set(TRANSITIONS) | set(LAZY_TRANSITIONS)
ILLEGAL = [
    (state, role, cls)
    for state in State
    for role in Role
    for cls in MESSAGE_TYPES.values()
    if (state, role, cls) not in LEGAL
]


def _ids(case: tuple[State, Role, type[Message]]) -> str:
    return f"{case[0].name}-{case[1].name}-{case[2].__name__}"


def test_illegal_cases_are_the_complement_of_the_table() -> None:
    assert len(ILLEGAL) + len(LEGAL) == len(State) * len(Role) * len(MESSAGE_TYPES)


@pytest.mark.parametrize("case", ILLEGAL, ids=[_ids(c) for c in ILLEGAL])
def test_illegal_send_is_refused_and_changes_nothing(
    case: tuple[State, Role, type[Message]],
) -> None:
    state, sender, cls = case
    conn, lazy = at(state, sender)
    before = (conn.state, conn.plan, conn.statistics())
    with pytest.raises(LocalProtocolError, match=cls.__name__):
        conn.send(sample(cls, lazy=not lazy))
    assert (conn.state, conn.plan, conn.statistics()) == before


@pytest.mark.parametrize("case", ILLEGAL, ids=[_ids(c) for c in ILLEGAL])
def test_illegal_receive_is_a_remote_error(case: tuple[State, Role, type[Message]]) -> None:
    state, sender, cls = case
    conn, lazy = at(state, sender.peer)
    conn.receive_data(encode(sample(cls, lazy=not lazy)))
    with pytest.raises(RemoteProtocolError, match=cls.__name__):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_refused_send_leaves_the_connection_usable() -> None:
    conn = Connection(S)
    with pytest.raises(LocalProtocolError):
        conn.send(Commit())
    with pytest.raises(LocalProtocolError, match="over"):
        Connection(S, max_frame=64).send(SAMPLES[Hello])
    conn.send(SAMPLES[Hello])
    assert conn.state is State.HELLO_SENT


def test_peer_fault_allows_one_explaining_error() -> None:
    conn = Connection(D)
    conn.receive_data(encode(Commit()))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(SAMPLES[Hello])
    assert conn.send(Error("protocol", "Commit in IDLE")) == encode(Error("protocol",
                                                                          "Commit in IDLE"))
    with pytest.raises(LocalProtocolError):
        conn.send(Error("protocol", "again"))
    assert conn.state is State.ERROR


def test_send_failed_breaks_both_directions() -> None:
    conn, _ = at(State.RESTORED, S)
    conn.send_failed()
    assert conn.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.send(Error("x", ""))
    conn.receive_data(encode(Aborted()))
    with pytest.raises(RemoteProtocolError, match="sending failed"):
        conn.next_event()


def test_plan_is_remembered_on_both_sides() -> None:
    pair = Pair()
    assert pair.source.plan is None
    pair.step(S, SAMPLES[Hello])
    pair.step(D, SAMPLES[Hello])
    pair.step(S, LAZY_PLAN)
    assert pair.source.plan == pair.destination.plan == LAZY_PLAN


def test_our_role_must_be_a_role() -> None:
    with pytest.raises(TypeError):
        Connection("source")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- end of file

@pytest.mark.parametrize("state", [s for s in State if s not in FINAL_STATES],
                         ids=_name)
@pytest.mark.parametrize("role", Role, ids=_name)
def test_eof_before_the_end_is_a_remote_error(state: State, role: Role) -> None:
    conn, _ = at(state, role)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match=state.name):
        conn.next_event()
    assert conn.state is State.ERROR


@pytest.mark.parametrize("state", [s for s in State if s in FINAL_STATES], ids=_name)
def test_eof_after_the_end_is_clean(state: State) -> None:
    conn, _ = at(state, S)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError, match="after end of file"):
        conn.receive_data(b"x")


def test_truncated_frames_need_data_then_fail_at_eof() -> None:
    data = encode(SAMPLES[Hello])
    for cut in range(1, len(data)):
        conn = Connection(D)
        conn.receive_data(data[:cut])
        assert conn.next_event() is NEED_DATA
        conn.receive_data(b"")
        with pytest.raises(RemoteProtocolError, match="middle of a frame"):
            conn.next_event()


def test_oversized_frame_is_refused_before_it_arrives() -> None:
    conn = Connection(D, max_frame=4096)
    conn.receive_data(struct.pack(">I", 4097))
    with pytest.raises(RemoteProtocolError, match="4097"):
        conn.next_event()
    assert conn.state is State.ERROR


def test_unknown_message_type() -> None:
    conn = Connection(D)
    header = b'{"type":"Eval","code":"__import__(\'os\')"}'
    conn.receive_data(struct.pack(">IH", 2 + len(header), len(header)) + header)
    with pytest.raises(RemoteProtocolError, match="unknown message type"):
        conn.next_event()


def test_statistics() -> None:
    pair = Pair()
    pair.step(S, SAMPLES[Hello])
    stats = pair.source.statistics()
    assert stats.messages_sent == 1
    assert stats.bytes_sent == len(encode(SAMPLES[Hello]))
    assert pair.destination.statistics().bytes_received == stats.bytes_sent
    assert pair.destination.statistics().messages_received == 1
    pair.destination.receive_data(b"\0\0")
    assert pair.destination.statistics().bytes_buffered == 2


def test_precopy_sets_then_a_lazy_final_set_waits_for_pages() -> None:
    pair = _to_ready(Plan("m-3", "hybrid", 4242, lazy=False))
    pair.step(S, Iterate(2))
    assert pair.state is State.ITERATING
    pair.step(D, Ready(40001))
    assert not pair.source.lazy
    assert not pair.destination.lazy
    pair.step(S, Iterate(3, final=True, lazy=True))
    assert pair.source.lazy
    assert pair.destination.lazy
    pair.step(D, Ready(0))
    for sender, msg in [(S, Restore(0, 0, 40002)), (D, Restored(9, {})), (S, Commit()),
                        (D, Committed(9))]:
        pair.step(sender, msg)
    assert pair.state is State.FETCHING
    pair.step(D, PagesComplete(1, 4096, 3))
    assert pair.state is State.DONE


def test_precopy_final_set_not_lazy_ends_at_committed() -> None:
    pair = _to_ready(Plan("m-4", "precopy", 4242, lazy=False))
    pair.step(S, Iterate(2, final=True))
    pair.step(D, Ready(40001))
    for sender, msg in [(S, Restore(0, 0)), (D, Restored(9, {})), (S, Commit()),
                        (D, Committed(9))]:
        pair.step(sender, msg)
    assert pair.state is State.DONE


def test_no_abort_while_the_next_page_server_starts() -> None:
    pair = _to_ready(Plan("m-5", "precopy", 4242, lazy=False))
    pair.step(S, Iterate(2))
    with pytest.raises(LocalProtocolError):
        pair.source.send(Abort("operator"))
    pair.step(D, Ready(1))
    pair.step(S, Abort("operator"))
    pair.step(D, Aborted())
    assert pair.state is State.CLOSED

