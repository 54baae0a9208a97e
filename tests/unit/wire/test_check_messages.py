"""CheckRequest / CheckReport: JSON text bounded so that the frame header always fits."""

from __future__ import annotations

import pytest

from ferryman.errors import LocalProtocolError
from ferryman.wire import CheckReport, CheckRequest, encode
from ferryman.wire.framing import FrameDecoder
from ferryman.wire.limits import MAX_CHECK_JSON_BYTES


@pytest.mark.parametrize("cls", [CheckRequest, CheckReport])
def test_largest_text_fits_a_frame(cls: type[CheckRequest] | type[CheckReport]) -> None:
    msg = cls("x" * (MAX_CHECK_JSON_BYTES - 2))  # the two quotes of the JSON string
    decoder = FrameDecoder()
    decoder.receive_data(encode(msg))
    assert decoder.maybe_message() == msg


@pytest.mark.parametrize("text", [
    "x" * (MAX_CHECK_JSON_BYTES + 1),
    '"' * (MAX_CHECK_JSON_BYTES // 2),  # each quote is escaped: twice as long in the header
    "\x01" * (MAX_CHECK_JSON_BYTES // 6 + 1),  # control characters become \\u0001
])
def test_text_too_long_once_escaped(text: str) -> None:
    with pytest.raises(LocalProtocolError, match="query"):
        CheckRequest(text)
    with pytest.raises(LocalProtocolError, match="result"):
        CheckReport(text)
