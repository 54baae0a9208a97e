"""The legal order of control messages, as a table.

One conversation state is shared by both ends: each :class:`~ferryman.wire.Connection`
applies the same :data:`TRANSITIONS` to what it sends and to what it receives. A
``(state, sender, message type)`` that is not in the table is illegal.

Happy path (cold; ``*`` = SOURCE sends, ``<`` = DESTINATION sends)::

    IDLE *Hello HELLO_SENT <Hello GREETED *Plan PLANNED <Ready READY
    READY|TRANSFERRING *FileChunk|*FileEnd TRANSFERRING      (files may interleave)
    READY|TRANSFERRING *Restore RESTORING <Restored RESTORED *Commit COMMITTING <Committed DONE

Pre-flight: in GREETED the source may ask ``*CheckRequest`` (-> CHECKING) and the destination
answers ``<CheckReport`` (-> GREETED again), any number of times, so a Plan can follow on the
same connection (``ferryman migrate``); ``ferryman check`` ends with ``*Abort`` instead. No
Abort in CHECKING: it would cross the CheckReport the destination owes.

Link test (``--mode auto``): in GREETED the source may send ``*LinkTest`` (-> MEASURING) and
the destination answers ``<LinkReport`` (-> GREETED), any number of times: a small one and a
large one time the link by their round trips. No Abort in MEASURING, as in CHECKING.

Pre-copy (mode precopy or hybrid): the Ready answering the Plan serves image set 1 (the first
pre-dump); then, any number of times, ``READY *Iterate ITERATING <Ready READY`` opens the page
server for the next set, the last one marked ``final``. No Abort in ITERATING (it would cross
the Ready): the source waits for the Ready and aborts from READY. An ``Iterate(lazy=True)``
turns the conversation lazy, as a lazy Plan does; before its Ready the destination sends the
page maps of its sets back (``<FileChunk``/``<FileEnd``): the source's lazy dump needs them
to know which pages the destination already has.

When the Plan said ``lazy=True`` (or ``streamed=True``: a cold restore whose pages were all
fetched before Restored; its PagesComplete reports that fetch), ``Committed`` leads to
FETCHING instead (see :data:`LAZY_TRANSITIONS`, the one guard), and ``<PagesComplete`` then
leads to DONE.

A received file that fails its checks (SHA-256, size, order, name, disk full):
``TRANSFERRING <Failed TRANSFER_FAILED``; the destination reads on, discarding the files that
were in flight (``*FileChunk|*FileEnd``, TRANSFER_FAILED again) until the source's ``*Abort``
(-> ABORTING), or its ``*Restore`` that crossed the Failed (-> FAILED, then ``*Abort``).

Endings: ``<Refused`` in PLANNED -> CLOSED. ``*Abort`` in GREETED, READY, TRANSFERRING,
TRANSFER_FAILED, RESTORING, RESTORED or FAILED -> ABORTING, then ``<Aborted`` -> CLOSED.
``Error`` from either side in any non-final state -> ERROR. DONE, CLOSED and ERROR are final:
nothing more may be sent or received, and end of file is clean.

Races, thought through:

* **Abort vs. the restore result.** An Abort sent in RESTORING can cross the destination's
  Restored or Failed. So Abort from RESTORING leads to ABORTING_RESTORE, which absorbs one
  Restored or Failed (-> ABORTING) before the Aborted. The destination's own view is plain:
  it sent Restored (RESTORED), then received Abort (RESTORED -> ABORTING) and answers Aborted.
  (A destination that reads the Abort while still restoring just answers Aborted; sending
  its result first is allowed and harmless.)
* **Abort vs. a transfer failure.** An Abort sent in TRANSFERRING can cross the destination's
  Failed about a received file: Abort from TRANSFERRING leads to ABORTING_TRANSFER, which
  absorbs one Failed (-> ABORTING) before the Aborted. The destination's view: it sent Failed
  (TRANSFER_FAILED), then received Abort (-> ABORTING). A source that sent its Restore before
  it read the Failed reads it in RESTORING (-> FAILED) and aborts from there.
  In every other abortable state the destination owes nothing, so nothing can cross.
* **No Abort in PLANNED.** It would cross Refused, after which the destination is CLOSED and
  would see an Abort in a final state. The destination answers a Plan at once: wait for Ready
  and abort from READY, or send Error.
* **No Abort from COMMITTING on** (:data:`POINT_OF_NO_RETURN`): the source has already
  destroyed its copy when it sends Commit.
* **Error crossing a message.** Error ends the conversation for its sender at once; the sender
  closes the transport and reads no further. Whatever the peer sent meanwhile is not read (if
  it is, it is a message in a final state: RemoteProtocolError, and nothing is lost by it).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from ferryman.wire.messages import (
    Abort,
    Aborted,
    CheckReport,
    CheckRequest,
    Commit,
    Committed,
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
)

__all__ = [
    "ABORTABLE_STATES",
    "FINAL_STATES",
    "LAZY_TRANSITIONS",
    "POINT_OF_NO_RETURN",
    "TRANSITIONS",
    "Role",
    "State",
    "next_state",
]


class Role(enum.Enum):
    """Who sends: the SOURCE (runs ``ferryman migrate``, the client) or the DESTINATION agent."""

    SOURCE = "source"
    DESTINATION = "destination"

    @property
    def peer(self) -> Role:
        return Role.DESTINATION if self is Role.SOURCE else Role.SOURCE


class State(enum.Enum):
    """Where the conversation is."""

    IDLE = "IDLE"
    HELLO_SENT = "HELLO_SENT"
    GREETED = "GREETED"
    CHECKING = "CHECKING"
    MEASURING = "MEASURING"
    PLANNED = "PLANNED"
    READY = "READY"
    ITERATING = "ITERATING"
    TRANSFERRING = "TRANSFERRING"
    TRANSFER_FAILED = "TRANSFER_FAILED"
    RESTORING = "RESTORING"
    RESTORED = "RESTORED"
    FAILED = "FAILED"
    COMMITTING = "COMMITTING"
    FETCHING = "FETCHING"
    ABORTING = "ABORTING"
    ABORTING_RESTORE = "ABORTING_RESTORE"
    ABORTING_TRANSFER = "ABORTING_TRANSFER"
    DONE = "DONE"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


FINAL_STATES: Final[frozenset[State]] = frozenset({State.DONE, State.CLOSED, State.ERROR})
"""The conversation is over: DONE (migrated), CLOSED (refused or aborted), ERROR."""

POINT_OF_NO_RETURN: Final[State] = State.COMMITTING
"""Entered when the source sends Commit, its own copy destroyed: no Abort from here on."""

ABORTABLE_STATES: Final[frozenset[State]] = frozenset(
    {State.GREETED, State.READY, State.TRANSFERRING, State.TRANSFER_FAILED, State.RESTORING,
     State.RESTORED, State.FAILED}
)
"""States in which the SOURCE may send Abort."""

_S: Final = Role.SOURCE
_D: Final = Role.DESTINATION

Key = tuple[State, Role, type[Message]]

_ABORT_CROSSING: Final[Mapping[State, State]] = MappingProxyType({
    State.RESTORING: State.ABORTING_RESTORE,  # the Abort may cross Restored or Failed
    State.TRANSFERRING: State.ABORTING_TRANSFER,  # the Abort may cross a Failed
})

TRANSITIONS: Final[Mapping[Key, State]] = MappingProxyType({
    (State.IDLE, _S, Hello): State.HELLO_SENT,
    (State.HELLO_SENT, _D, Hello): State.GREETED,
    (State.GREETED, _S, CheckRequest): State.CHECKING,
    (State.CHECKING, _D, CheckReport): State.GREETED,
    (State.GREETED, _S, LinkTest): State.MEASURING,
    (State.MEASURING, _D, LinkReport): State.GREETED,
    (State.GREETED, _S, Plan): State.PLANNED,
    (State.PLANNED, _D, Ready): State.READY,
    (State.PLANNED, _D, Refused): State.CLOSED,
    (State.READY, _S, Iterate): State.ITERATING,
    (State.ITERATING, _D, Ready): State.READY,
    (State.ITERATING, _D, FileChunk): State.ITERATING,  # page maps back, for a lazy final set
    (State.ITERATING, _D, FileEnd): State.ITERATING,
    (State.READY, _S, FileChunk): State.TRANSFERRING,
    (State.READY, _S, FileEnd): State.TRANSFERRING,
    (State.READY, _S, Restore): State.RESTORING,
    (State.TRANSFERRING, _S, FileChunk): State.TRANSFERRING,
    (State.TRANSFERRING, _S, FileEnd): State.TRANSFERRING,
    (State.TRANSFERRING, _S, Restore): State.RESTORING,
    (State.TRANSFERRING, _D, Failed): State.TRANSFER_FAILED,  # a received file was bad
    (State.TRANSFER_FAILED, _S, FileChunk): State.TRANSFER_FAILED,  # in flight: discarded
    (State.TRANSFER_FAILED, _S, FileEnd): State.TRANSFER_FAILED,
    (State.TRANSFER_FAILED, _S, Restore): State.FAILED,  # crossed the Failed
    (State.RESTORING, _D, Restored): State.RESTORED,
    (State.RESTORING, _D, Failed): State.FAILED,
    (State.RESTORED, _S, Commit): State.COMMITTING,
    (State.COMMITTING, _D, Committed): State.DONE,
    (State.FETCHING, _D, PagesComplete): State.DONE,
    **{
        (state, _S, Abort): _ABORT_CROSSING.get(state, State.ABORTING)
        for state in ABORTABLE_STATES
    },
    (State.ABORTING_RESTORE, _D, Restored): State.ABORTING,  # crossed the Abort
    (State.ABORTING_RESTORE, _D, Failed): State.ABORTING,  # crossed the Abort
    (State.ABORTING_RESTORE, _D, Aborted): State.CLOSED,
    (State.ABORTING_TRANSFER, _D, Failed): State.ABORTING,  # crossed the Abort
    (State.ABORTING_TRANSFER, _D, Aborted): State.CLOSED,
    (State.ABORTING, _D, Aborted): State.CLOSED,
    **{
        (state, role, Error): State.ERROR
        for state in State
        if state not in FINAL_STATES
        for role in Role
    },
})
"""``(state, sender, message type) -> next state``: every legal step of a conversation."""

LAZY_TRANSITIONS: Final[Mapping[Key, State]] = MappingProxyType({
    (State.COMMITTING, _D, Committed): State.FETCHING,
})
"""Overrides of :data:`TRANSITIONS` that apply when the Plan said ``lazy=True``."""


def next_state(state: State, sender: Role, msg_type: type[Message], *, lazy: bool) -> State | None:
    """Where ``sender`` sending a ``msg_type`` in ``state`` leads, or ``None`` if illegal."""
    key = (state, sender, msg_type)
    if lazy and key in LAZY_TRANSITIONS:
        return LAZY_TRANSITIONS[key]
    return TRANSITIONS.get(key)
