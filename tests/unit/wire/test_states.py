"""The transition table itself: shape, reachability and ways out."""

from __future__ import annotations

import pytest

from ferryman.wire import (
    ABORTABLE_STATES,
    FINAL_STATES,
    LAZY_TRANSITIONS,
    MESSAGE_TYPES,
    POINT_OF_NO_RETURN,
    TRANSITIONS,
    Abort,
    Committed,
    Error,
    Failed,
    FileChunk,
    FileEnd,
    Restore,
    Restored,
    Role,
    State,
    next_state,
)

from .helpers import shortest_paths

ALL_KEYS = {**TRANSITIONS, **LAZY_TRANSITIONS}


def _name(state: State) -> str:
    return state.name


def _targets(state: State) -> set[State]:
    out = set()
    for (from_state, sender, msg_type) in ALL_KEYS:
        if from_state is state:
            for lazy in (False, True):
                target = next_state(state, sender, msg_type, lazy=lazy)
                assert target is not None
                out.add(target)
    return out


@pytest.mark.parametrize("state", State, ids=_name)
def test_every_state_can_reach_a_final_state(state: State) -> None:
    seen, todo = {state}, [state]
    while todo:
        for target in _targets(todo.pop()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen & FINAL_STATES


def test_every_state_is_reachable() -> None:
    assert set(shortest_paths()) == set(State)


def test_final_states_are_final() -> None:
    assert {State.DONE, State.CLOSED, State.ERROR} == FINAL_STATES
    for state in FINAL_STATES:
        assert not _targets(state)


@pytest.mark.parametrize("state", [s for s in State if s not in FINAL_STATES],
                         ids=_name)
def test_error_from_either_side_in_every_non_final_state(state: State) -> None:
    for role in Role:
        assert next_state(state, role, Error, lazy=False) is State.ERROR


def test_abort_only_before_the_point_of_no_return() -> None:
    allowed = {s for s in State if next_state(s, Role.SOURCE, Abort, lazy=False)}
    assert allowed == ABORTABLE_STATES
    assert POINT_OF_NO_RETURN is State.COMMITTING
    after = {State.COMMITTING, State.FETCHING, State.DONE}
    assert not allowed & after
    assert State.PLANNED not in allowed  # would cross Refused; see the states docstring
    assert not any(next_state(s, Role.DESTINATION, Abort, lazy=False) for s in State)


def test_abort_during_restore_absorbs_one_crossing_result() -> None:
    assert next_state(State.RESTORING, Role.SOURCE, Abort, lazy=False) is State.ABORTING_RESTORE
    for crossing in (Restored, Failed):
        assert next_state(State.ABORTING_RESTORE, Role.DESTINATION, crossing, lazy=False) \
            is State.ABORTING
        assert next_state(State.ABORTING, Role.DESTINATION, crossing, lazy=False) is None


def test_a_bad_file_is_reported_while_files_stream() -> None:
    assert next_state(State.TRANSFERRING, Role.DESTINATION, Failed, lazy=False) \
        is State.TRANSFER_FAILED
    for in_flight in (FileChunk, FileEnd):
        assert next_state(State.TRANSFER_FAILED, Role.SOURCE, in_flight, lazy=False) \
            is State.TRANSFER_FAILED
    assert next_state(State.TRANSFER_FAILED, Role.SOURCE, Restore, lazy=False) is State.FAILED
    assert next_state(State.TRANSFER_FAILED, Role.SOURCE, Abort, lazy=False) is State.ABORTING
    assert next_state(State.TRANSFERRING, Role.SOURCE, Abort, lazy=False) \
        is State.ABORTING_TRANSFER
    assert next_state(State.ABORTING_TRANSFER, Role.DESTINATION, Failed, lazy=False) \
        is State.ABORTING
    assert next_state(State.ABORTING_TRANSFER, Role.DESTINATION, Restored, lazy=False) is None


def test_lazy_guard() -> None:
    assert next_state(State.COMMITTING, Role.DESTINATION, Committed, lazy=False) is State.DONE
    assert next_state(State.COMMITTING, Role.DESTINATION, Committed, lazy=True) is State.FETCHING
    assert set(LAZY_TRANSITIONS) <= set(TRANSITIONS)


def test_table_only_names_known_messages() -> None:
    assert {key[2] for key in ALL_KEYS} == set(MESSAGE_TYPES.values())


def test_each_message_has_one_sender() -> None:
    senders: dict[type, set[Role]] = {}
    for (_, role, msg_type) in ALL_KEYS:
        senders.setdefault(msg_type, set()).add(role)
    both = {cls for cls, roles in senders.items() if len(roles) == 2}
    assert {cls.__name__ for cls in both} == {"Hello", "Error", "FileChunk", "FileEnd"}
    # the destination sends files only while the source waits for its next image set
    assert {s for (s, role, t) in ALL_KEYS if role is Role.DESTINATION
            and t.__name__ in ("FileChunk", "FileEnd")} == {State.ITERATING}
