"""The control messages' bounds: sizes, counts and patterns every message is checked against
(wire/messages.py), and the checks that use them alone (a code, a text, JSON text).

One place for them, so that the receivers that size their buffers or batches by them
(agent/link.py, agent/fifos.py, agent/gate.py) read the same numbers the decoder enforces.
"""

from __future__ import annotations

import json
import re
from typing import Final

from ferryman.errors import LocalProtocolError
from ferryman.wire._checks import MAX_MAPPING_ITEMS, check_str, check_text_bytes

MAX_PROTOCOL_VERSION: Final = 0xFFFF
MAX_NODE_CHARS: Final = 255
MAX_CRIU_VERSION_CHARS: Final = 64
MAX_CPUINFO_BYTES: Final = 1 << 20
MAX_CHUNK_BYTES: Final = 4 << 20
MAX_TEXT_CHARS: Final = 4096
MAX_LOG_TAIL_BYTES: Final = 64 << 10
MAX_CHECK_JSON_BYTES: Final = 60000  # JSON-escaped, so that the frame header stays < 64 KiB
MAX_ITERATIONS: Final = 1000  # pre-dumps in one migration
PID_MAX: Final = 1 << 22  # PID_MAX_LIMIT on 64-bit Linux
PORT_MAX: Final = 0xFFFF
CODE_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MIGRATION_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
IP_TEXT_RE: Final = re.compile(r"[0-9A-Fa-f.:]*")  # an IPv4 or IPv6 address, or ""
MAX_FIFO_DEVICES: Final = MAX_MAPPING_ITEMS  # Restore.fifo_devices
BOOT_ID_RE: Final = re.compile(r"[0-9a-f-]{0,36}")  # /proc/sys/kernel/random/boot_id


def check_code(owner: str, value: object) -> None:
    check_str(owner, "code", value, max_chars=64, pattern=CODE_RE)


def check_text(owner: str, name: str, value: object) -> None:
    check_str(owner, name, value, max_chars=MAX_TEXT_CHARS)


def check_json_text(owner: str, name: str, value: object) -> None:
    """Text (meant to be JSON, checked by its reader) that fits the frame header escaped."""
    check_text_bytes(owner, name, value, max_bytes=MAX_CHECK_JSON_BYTES)
    escaped = json.dumps(value, ensure_ascii=False).encode("utf-8")
    if len(escaped) > MAX_CHECK_JSON_BYTES:
        raise LocalProtocolError(
            f"{owner}.{name} must be at most {MAX_CHECK_JSON_BYTES} bytes once JSON-escaped")
