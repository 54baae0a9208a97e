"""ferryman.wire: the sans-IO control protocol between SOURCE and DESTINATION.

No sockets, files or asyncio here. :mod:`.messages` are frozen dataclasses checked on
construction, :mod:`.framing` turns them into length-prefixed frames and back, :mod:`.states`
is the table of legal message order, and :class:`Connection` ties them together the h11 way:
``send(msg) -> bytes``, ``receive_data(bytes)``, ``next_event()``.
"""

from __future__ import annotations

from ferryman.wire.connection import (
    NEED_DATA,
    Connection,
    ConnectionClosed,
    ConnectionStatistics,
    Event,
    NeedData,
)
from ferryman.wire.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode
from ferryman.wire.messages import (
    MESSAGE_TYPES,
    MODES,
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
from ferryman.wire.states import (
    ABORTABLE_STATES,
    FINAL_STATES,
    LAZY_TRANSITIONS,
    POINT_OF_NO_RETURN,
    TRANSITIONS,
    Role,
    State,
    next_state,
)

__all__ = [
    "ABORTABLE_STATES",
    "DEFAULT_MAX_FRAME",
    "FINAL_STATES",
    "LAZY_TRANSITIONS",
    "MESSAGE_TYPES",
    "MODES",
    "NEED_DATA",
    "POINT_OF_NO_RETURN",
    "TRANSITIONS",
    "Abort",
    "Aborted",
    "CheckReport",
    "CheckRequest",
    "Commit",
    "Committed",
    "Connection",
    "ConnectionClosed",
    "ConnectionStatistics",
    "Error",
    "Event",
    "Failed",
    "FileChunk",
    "FileEnd",
    "FrameDecoder",
    "Hello",
    "Iterate",
    "LinkReport",
    "LinkTest",
    "Message",
    "NeedData",
    "PagesComplete",
    "Plan",
    "Ready",
    "Refused",
    "Restore",
    "Restored",
    "Role",
    "State",
    "encode",
    "next_state",
]
