"""The TP-Link HS100/HS110 local protocol, without any I/O (sans-IO, like h11).

Bytes on the wire: a 4-byte big-endian length of the encrypted payload, then the payload,
encrypted with an autokey XOR cipher whose key starts at 0xAB. Discovery datagrams (UDP)
carry the encrypted payload without the length. The payload is a JSON request
``{"module": {"method": args}}``; replies mirror it and carry ``err_code`` either at module
level or under the method, so :func:`method_result` looks in both places.

Old scripts send the fixed prefix ``\\x00\\x00\\x00\\x23`` whatever the payload; newer firmware
drops such messages, so :func:`encode_request` always sends the real length.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import TypeAlias, cast

from ferryman.power.errors import (
    ERR_CODE_MEANINGS,
    PlugConnectionClosed,
    PlugDeviceError,
    PlugProtocolError,
)

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
JSONObject: TypeAlias = dict[str, JSONValue]

INITIAL_KEY = 0xAB
HEADER = struct.Struct(">I")
#: Largest reply payload we accept; a sysinfo is under 1 KiB, an icon some tens of KiB.
MAX_PAYLOAD = 1 << 20

SYSINFO_REQUEST: JSONObject = {"system": {"get_sysinfo": {}}}


# --- cipher -------------------------------------------------------------------------------

def encrypt(plain: bytes) -> bytes:
    """Autokey XOR: ``k = k ^ p; out k``, starting with ``k = 0xAB``."""
    key = INITIAL_KEY
    out = bytearray(len(plain))
    for i, byte in enumerate(plain):
        key ^= byte
        out[i] = key
    return bytes(out)


def decrypt(cipher: bytes) -> bytes:
    """Inverse of :func:`encrypt`: ``out k ^ c; k = c``, i.e. each byte XOR the one before."""
    if not cipher:
        return b""
    shifted = bytes((INITIAL_KEY,)) + cipher[:-1]
    value = int.from_bytes(cipher, "big") ^ int.from_bytes(shifted, "big")
    return value.to_bytes(len(cipher), "big")


# --- framing ------------------------------------------------------------------------------

def encode_json(request: JSONObject) -> bytes:
    """The request as compact UTF-8 JSON, before encryption."""
    return json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode()


def encode_frame(plain: bytes) -> bytes:
    """Length prefix (of the encrypted payload, which has the plaintext's length) + payload."""
    return HEADER.pack(len(plain)) + encrypt(plain)


def encode_request(request: JSONObject) -> bytes:
    """A TCP message for ``request``."""
    return encode_frame(encode_json(request))


def encode_datagram(request: JSONObject) -> bytes:
    """A UDP discovery message for ``request``: encrypted, no length prefix."""
    return encrypt(encode_json(request))


def decode_datagram(datagram: bytes) -> JSONObject:
    """Parse a UDP reply (no length prefix)."""
    return parse_payload(decrypt(datagram))


class FrameDecoder:
    """Reassembles length-prefixed replies from TCP data that arrives in arbitrary pieces.

    Feed bytes with :meth:`receive_data` (and :meth:`receive_eof` when the peer closed);
    :meth:`maybe_frame` returns the next decrypted payload, or None while more is needed.
    """

    def __init__(self, *, max_payload: int = MAX_PAYLOAD) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._max_payload = max_payload

    def receive_data(self, data: bytes) -> None:
        if self._eof:
            raise ValueError("data after EOF")
        self._buffer += data

    def receive_eof(self) -> None:
        self._eof = True

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def maybe_frame(self) -> bytes | None:
        """The next whole payload, decrypted; None if more data is needed.

        Raises PlugConnectionClosed if the peer closed before a whole frame, and
        PlugProtocolError if the announced length is over the limit.
        """
        if len(self._buffer) < HEADER.size:
            if self._eof:
                raise PlugConnectionClosed(len(self._buffer), None)
            return None
        (length,) = HEADER.unpack_from(self._buffer)
        if length > self._max_payload:
            raise PlugProtocolError(
                f"reply announces {length} bytes, over the {self._max_payload}-byte limit",
                hint="is this really a TP-Link smart plug on this port?",
            )
        end = HEADER.size + length
        if len(self._buffer) < end:
            if self._eof:
                raise PlugConnectionClosed(len(self._buffer) - HEADER.size, length)
            return None
        payload = bytes(self._buffer[HEADER.size:end])
        del self._buffer[:end]
        return decrypt(payload)


# --- replies ------------------------------------------------------------------------------

def parse_payload(plain: bytes) -> JSONObject:
    """Decode a decrypted payload as a JSON object."""
    try:
        value = json.loads(plain.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PlugProtocolError(f"reply is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise PlugProtocolError(f"reply is a JSON {type(value).__name__}, not an object")
    return cast(JSONObject, value)


def validate_request(value: object) -> JSONObject:
    """Check that ``value`` has the shape ``{"module": {"method": args}}``. Raises ValueError."""
    if not isinstance(value, dict) or not value:
        raise ValueError('a request is a non-empty object: {"module": {"method": {...}}}')
    for module, methods in value.items():
        if not isinstance(methods, dict) or not methods:
            raise ValueError(f"module {module!r} must map to an object of methods")
    return cast(JSONObject, value)


def _raise_for_err_code(section: JSONObject, module: str, method: str | None) -> None:
    code = section.get("err_code", 0)
    if isinstance(code, bool) or not isinstance(code, int):
        raise PlugProtocolError(f"err_code of {module} is not an integer: {code!r}")
    if code != 0:
        message = section.get("err_msg")
        if not isinstance(message, str):
            message = ERR_CODE_MEANINGS.get(code, "unknown error")
        raise PlugDeviceError(code, message, module=module, method=method)


def method_result(reply: JSONObject, module: str, method: str) -> JSONObject:
    """The result object of ``module.method``, after checking ``err_code`` at both levels."""
    section = reply.get(module)
    if not isinstance(section, dict):
        raise PlugProtocolError(f"reply has no object for module {module!r}")
    _raise_for_err_code(section, module, None)
    result = section.get(method)
    if not isinstance(result, dict):
        raise PlugProtocolError(f"reply has no object for {module}.{method}")
    _raise_for_err_code(result, module, method)
    return result


def check_reply(request: JSONObject, reply: JSONObject) -> None:
    """Raise for the first error in ``reply`` among the methods that ``request`` called."""
    for module, methods in request.items():
        if isinstance(methods, dict):
            for method in methods:
                method_result(reply, module, method)


# --- energy meter -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EnergyReading:
    """``emeter.get_realtime`` in SI-ish units, whatever the hardware generation said."""

    voltage_v: float
    current_a: float
    power_w: float
    total_kwh: float


# field: (hardware v1 key in V/A/W/kWh, later hardware key in mV/mA/mW/Wh)
_EMETER_KEYS = {
    "voltage_v": ("voltage", "voltage_mv"),
    "current_a": ("current", "current_ma"),
    "power_w": ("power", "power_mw"),
    "total_kwh": ("total", "total_wh"),
}


def _number(result: JSONObject, key: str) -> float | None:
    value = result.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def normalise_realtime(result: JSONObject) -> EnergyReading:
    """Accept both ``current, voltage, power, total`` (hardware v1: A, V, W, kWh) and
    ``current_ma, voltage_mv, power_mw, total_wh`` (later hardware)."""
    values: dict[str, float] = {}
    for field, (v1_key, v2_key) in _EMETER_KEYS.items():
        value = _number(result, v1_key)
        if value is None:
            scaled = _number(result, v2_key)
            if scaled is None:
                raise PlugProtocolError(
                    f"emeter reading lacks a number for {v1_key!r} or {v2_key!r}"
                )
            value = scaled / 1000
        values[field] = value
    return EnergyReading(**values)
