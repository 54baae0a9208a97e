"""The sans-IO control connection: bytes in, messages out, and the conversation's state.

Usage (either side)::

    conn = Connection(Role.SOURCE)
    sock.sendall(conn.send(Hello(...)))
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(sock.recv(65536))   # b"" = end of file
            continue
        ...                                       # a Message, or ConnectionClosed

Whose fault: :meth:`Connection.send` raises LocalProtocolError (we broke the protocol) and
leaves everything as it was; :meth:`Connection.next_event` raises RemoteProtocolError (the
peer broke it) and moves the connection to ERROR for good. After such a peer fault the
connection still lets us send one :class:`~ferryman.wire.messages.Error` to say why, then
nothing more. :meth:`Connection.send_failed` (our transport broke) also ends in ERROR.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from ferryman.errors import LocalProtocolError, RemoteProtocolError
from ferryman.wire.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode
from ferryman.wire.messages import Error, Iterate, Message, Plan
from ferryman.wire.states import FINAL_STATES, Role, State, next_state

__all__ = [
    "NEED_DATA",
    "Connection",
    "ConnectionClosed",
    "ConnectionStatistics",
    "Event",
    "NeedData",
]


class NeedData(enum.Enum):
    """Type of :data:`NEED_DATA` (a one-member enum, so ``is`` narrows it for mypy)."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA
"""Returned by :meth:`Connection.next_event` when the next message is not complete yet."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection cleanly, after the conversation ended."""


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """Counters of one connection (bytes are whole frames, as returned or received)."""

    messages_sent: int
    messages_received: int
    bytes_sent: int
    bytes_received: int
    bytes_buffered: int


Event = Message | NeedData | ConnectionClosed
"""What :meth:`Connection.next_event` returns."""


class Connection:
    """One control conversation, seen from ``our_role``'s end."""

    def __init__(self, our_role: Role, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not isinstance(our_role, Role):
            raise TypeError(f"our_role must be a Role, not {our_role!r}")
        self._our_role = our_role
        self._decoder = FrameDecoder(max_frame)
        self._state = State.IDLE
        self._plan: Plan | None = None
        self._lazy_final = False
        self._eof = False
        self._broken: str | None = None
        self._may_explain = False
        self._messages_sent = 0
        self._messages_received = 0
        self._bytes_sent = 0
        self._bytes_received = 0

    @property
    def our_role(self) -> Role:
        return self._our_role

    @property
    def their_role(self) -> Role:
        return self._our_role.peer

    @property
    def state(self) -> State:
        return self._state

    @property
    def plan(self) -> Plan | None:
        """The Plan this conversation agreed on (sent or received), once there is one."""
        return self._plan

    @property
    def max_frame(self) -> int:
        return self._decoder.max_frame

    def statistics(self) -> ConnectionStatistics:
        return ConnectionStatistics(
            messages_sent=self._messages_sent,
            messages_received=self._messages_received,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            bytes_buffered=self._decoder.buffered,
        )

    def send(self, msg: Message) -> bytes:
        """The bytes to write for ``msg``; the state moves on as if they were written.

        Raises LocalProtocolError, changing nothing, if we may not send ``msg`` now or it
        does not fit in a frame. If writing the bytes fails, call :meth:`send_failed`.
        """
        explaining = self._broken is not None and self._may_explain and type(msg) is Error
        if self._broken is not None and not explaining:
            raise LocalProtocolError(f"can't send {_name(msg)}: connection broken: {self._broken}")
        new_state = self._state if explaining else self._step(self._our_role, msg)
        if new_state is None:
            raise LocalProtocolError(
                f"{self._our_role.name} may not send {_name(msg)} in state {self._state.name}"
            )
        data = encode(msg, max_frame=self._decoder.max_frame)
        self._may_explain = False
        self._advance(new_state, msg)
        self._messages_sent += 1
        self._bytes_sent += len(data)
        return data

    def send_failed(self) -> None:
        """Our transport failed to write what :meth:`send` returned: the connection is over."""
        self._break("sending failed", may_explain=False)

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the peer; ``b""`` means end of file. Only stores them."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("received data after end of file")
        self._decoder.receive_data(data)
        self._bytes_received += len(data)

    def next_event(self) -> Event:
        """The next message from the peer, :data:`NEED_DATA`, or :class:`ConnectionClosed`.

        Raises RemoteProtocolError (and the state becomes ERROR) on a malformed frame, a
        message the peer may not send now, or end of file before the conversation ended.
        """
        if self._broken is not None:
            raise RemoteProtocolError(f"can't receive: connection broken: {self._broken}")
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._break(exc.message, may_explain=True)
            raise

    def _next_event(self) -> Event:
        msg = self._decoder.maybe_message()
        if msg is None:
            if not self._eof:
                return NEED_DATA
            if self._decoder.buffered:
                raise RemoteProtocolError("peer closed the connection in the middle of a frame")
            if self._state in FINAL_STATES:
                return ConnectionClosed()
            raise RemoteProtocolError(f"peer closed the connection in state {self._state.name}")
        new_state = self._step(self.their_role, msg)
        if new_state is None:
            raise RemoteProtocolError(
                f"{self.their_role.name} may not send {_name(msg)} in state {self._state.name}"
            )
        self._advance(new_state, msg)
        self._messages_received += 1
        return msg

    def _step(self, sender: Role, msg: Message) -> State | None:
        return next_state(self._state, sender, type(msg), lazy=self.lazy)

    @property
    def lazy(self) -> bool:
        """Pages follow on demand: the Plan said so (post-copy, a streamed cold restore),
        or a final lazy Iterate did."""
        return (self._plan is not None and self._plan.lazy_dump) or self._lazy_final

    def _advance(self, new_state: State, msg: Message) -> None:
        if isinstance(msg, Plan):
            self._plan = msg
        elif isinstance(msg, Iterate) and msg.lazy:
            self._lazy_final = True
        self._state = new_state

    def _break(self, reason: str, *, may_explain: bool) -> None:
        self._state = State.ERROR
        self._broken = reason
        self._may_explain = may_explain


def _name(msg: object) -> str:
    return type(msg).__name__
