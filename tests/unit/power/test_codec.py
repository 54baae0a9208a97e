"""The pure codec: cipher, framing, reply parsing. No sockets."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.power import codec
from ferryman.power.errors import PlugConnectionClosed, PlugDeviceError, PlugProtocolError
from tests.support.hs100_sim import LEGACY_PREFIX, xor_decrypt, xor_encrypt

SYSINFO_JSON = b'{"system":{"get_sysinfo":{}}}'
# Published vectors (python-kasa, softScheck): the sysinfo query, with {} and with null.
SYSINFO_CIPHER = bytes.fromhex("d0f281f88bff9af7d5ef94b6d1b4c09fec95e68fe187e8caf08bf68bf6")
SYSINFO_NULL_CIPHER = bytes.fromhex(
    "d0f281f88bff9af7d5ef94b6d1b4c09fec95e68fe187e8caf09eeb87eb96eb"
)

# Same examples on every run, no example database in the tree, no timing-dependent failures.
deterministic = settings(derandomize=True, database=None, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


def test_sysinfo_query_encrypts_to_the_published_bytes() -> None:
    assert codec.encrypt(SYSINFO_JSON) == SYSINFO_CIPHER
    assert codec.encrypt(b'{"system":{"get_sysinfo":null}}') == SYSINFO_NULL_CIPHER


def test_published_bytes_decrypt_to_the_sysinfo_query() -> None:
    assert codec.decrypt(SYSINFO_CIPHER) == SYSINFO_JSON


def test_first_byte_is_xored_with_0xab_and_empty_stays_empty() -> None:
    assert codec.encrypt(b"\x00") == b"\xab"
    assert codec.decrypt(b"\xab") == b"\x00"
    assert codec.encrypt(b"") == codec.decrypt(b"") == b""


def test_request_frame_carries_the_real_length_not_the_legacy_0x23() -> None:
    message = codec.encode_request(codec.SYSINFO_REQUEST)
    assert message[:4] == struct.pack(">I", 29) == b"\x00\x00\x00\x1d"
    assert message[:4] != LEGACY_PREFIX
    assert message[4:] == SYSINFO_CIPHER


def test_discovery_datagram_has_no_length_prefix() -> None:
    assert codec.encode_datagram(codec.SYSINFO_REQUEST) == SYSINFO_CIPHER


@deterministic
@given(st.binary(max_size=2048))
def test_decrypt_inverts_encrypt(data: bytes) -> None:
    assert codec.decrypt(codec.encrypt(data)) == data
    assert codec.encrypt(codec.decrypt(data)) == data


@deterministic
@given(st.binary(max_size=512))
def test_cipher_agrees_with_the_simulators_independent_cipher(data: bytes) -> None:
    assert codec.encrypt(data) == xor_encrypt(data)
    assert codec.decrypt(data) == xor_decrypt(data)


@deterministic
@given(st.binary(max_size=512))
def test_ciphertext_has_the_plaintexts_length(data: bytes) -> None:
    assert len(codec.encrypt(data)) == len(data)


@deterministic
@given(json_objects)
def test_json_objects_round_trip_through_frame_and_decoder(obj: codec.JSONObject) -> None:
    decoder = codec.FrameDecoder()
    decoder.receive_data(codec.encode_request(obj))
    payload = decoder.maybe_frame()
    assert payload is not None
    assert codec.parse_payload(payload) == obj
    assert decoder.buffered == 0


@deterministic
@given(
    st.lists(st.binary(max_size=200), min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30),
)
def test_decoder_reassembles_frames_however_the_bytes_are_split(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(codec.encode_frame(p) for p in payloads)
    decoder = codec.FrameDecoder()
    received: list[bytes] = []
    position, index = 0, 0
    while position < len(stream):
        size = cuts[index % len(cuts)]
        decoder.receive_data(stream[position:position + size])
        position, index = position + size, index + 1
        while (frame := decoder.maybe_frame()) is not None:
            received.append(frame)
    assert received == payloads


def test_decoder_needs_more_data_for_a_partial_header_or_payload() -> None:
    message = codec.encode_request(codec.SYSINFO_REQUEST)
    decoder = codec.FrameDecoder()
    decoder.receive_data(message[:3])
    assert decoder.maybe_frame() is None
    decoder.receive_data(message[3:10])
    assert decoder.maybe_frame() is None
    decoder.receive_data(message[10:])
    assert decoder.maybe_frame() == SYSINFO_JSON


def test_eof_mid_payload_reports_how_much_arrived() -> None:
    decoder = codec.FrameDecoder()
    decoder.receive_data(codec.encode_frame(b"x" * 100)[:54])
    decoder.receive_eof()
    with pytest.raises(PlugConnectionClosed) as caught:
        decoder.maybe_frame()
    assert (caught.value.received, caught.value.expected) == (50, 100)


def test_eof_before_a_header_is_a_closed_connection() -> None:
    decoder = codec.FrameDecoder()
    decoder.receive_data(b"\x00\x00")
    decoder.receive_eof()
    with pytest.raises(PlugConnectionClosed) as caught:
        decoder.maybe_frame()
    assert caught.value.expected is None


def test_announced_length_over_the_limit_is_a_protocol_error_without_waiting() -> None:
    decoder = codec.FrameDecoder(max_payload=1000)
    decoder.receive_data(b"HTTP/1.1 400")  # not a plug: "HTTP" read as a length
    with pytest.raises(PlugProtocolError, match="over the 1000-byte limit"):
        decoder.maybe_frame()


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"not json", b"[1, 2]", b'"text"', b"[" * 100000])
def test_payload_that_is_not_a_json_object_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(PlugProtocolError):
        codec.parse_payload(payload)


@pytest.mark.parametrize(
    ("reply", "code", "method"),
    [
        ({"emeter": {"err_code": -1, "err_msg": "module not support"}}, -1, None),
        ({"emeter": {"get_realtime": {"err_code": -1, "err_msg": "module not support"}}}, -1,
         "get_realtime"),
        ({"emeter": {"err_code": -2, "err_msg": "member not support"}}, -2, None),
        ({"emeter": {"get_realtime": {"err_code": -2}}}, -2, "get_realtime"),
        ({"emeter": {"get_realtime": {"err_code": -3, "err_msg": "invalid argument"}}}, -3,
         "get_realtime"),
    ],
    ids=["-1 module level", "-1 method level", "-2 module level", "-2 method level no msg",
         "-3 method level"],
)
def test_err_code_is_found_at_module_and_at_method_level(
    reply: codec.JSONObject, code: int, method: str | None
) -> None:
    with pytest.raises(PlugDeviceError) as caught:
        codec.method_result(reply, "emeter", "get_realtime")
    assert caught.value.err_code == code
    assert caught.value.module == "emeter"
    assert caught.value.method == method
    assert f"err_code {code}" in caught.value.one_line()


def test_missing_err_msg_is_replaced_by_the_documented_meaning() -> None:
    with pytest.raises(PlugDeviceError) as caught:
        codec.method_result({"system": {"x": {"err_code": -2}}}, "system", "x")
    assert caught.value.device_message == "member not supported"


def test_successful_result_is_returned_and_missing_err_code_counts_as_ok() -> None:
    reply: codec.JSONObject = {
        "system": {"set_relay_state": {"err_code": 0}, "get_sysinfo": {"alias": "a"}}
    }
    assert codec.method_result(reply, "system", "get_sysinfo") == {"alias": "a"}
    codec.check_reply({"system": {"set_relay_state": {"state": 1}, "get_sysinfo": {}}}, reply)


@pytest.mark.parametrize(
    "reply",
    [{}, {"system": []}, {"system": {}}, {"system": {"get_sysinfo": 3}},
     {"system": {"get_sysinfo": {"err_code": "0"}}}],
)
def test_reply_without_the_asked_method_is_a_protocol_error(reply: codec.JSONObject) -> None:
    with pytest.raises(PlugProtocolError):
        codec.method_result(reply, "system", "get_sysinfo")


def test_check_reply_raises_for_the_first_failed_method_of_several_modules() -> None:
    request: codec.JSONObject = {"system": {"get_sysinfo": {}}, "emeter": {"get_realtime": {}}}
    reply: codec.JSONObject = {"system": {"get_sysinfo": {"err_code": 0}},
             "emeter": {"err_code": -1, "err_msg": "module not support"}}
    with pytest.raises(PlugDeviceError) as caught:
        codec.check_reply(request, reply)
    assert (caught.value.module, caught.value.err_code) == ("emeter", -1)


def test_energy_of_hardware_v1_and_later_hardware_normalise_to_the_same_reading() -> None:
    v1: codec.JSONObject = {"current": 0.512, "voltage": 230.1, "power": 117.8, "total": 1.234,
                            "err_code": 0}
    v2: codec.JSONObject = {"current_ma": 512, "voltage_mv": 230100, "power_mw": 117800,
                            "total_wh": 1234}
    expected = codec.EnergyReading(voltage_v=230.1, current_a=0.512, power_w=117.8,
                                   total_kwh=1.234)
    assert codec.normalise_realtime(v1) == expected
    assert codec.normalise_realtime(v2) == expected


@deterministic
@given(st.integers(0, 10**7), st.integers(0, 10**6), st.integers(0, 10**8), st.integers(0, 10**7))
def test_later_hardware_units_are_divided_by_a_thousand(mv: int, ma: int, mw: int, wh: int) -> None:
    reading = codec.normalise_realtime(
        {"voltage_mv": mv, "current_ma": ma, "power_mw": mw, "total_wh": wh})
    assert reading == codec.EnergyReading(mv / 1000, ma / 1000, mw / 1000, wh / 1000)


@pytest.mark.parametrize(
    "result",
    [{}, {"voltage": 230.0, "current": 0.1, "power": 1.0},
     {"voltage": True, "current": 0.1, "power": 1.0, "total": 0.0},
     {"voltage_mv": "230", "current_ma": 1, "power_mw": 1, "total_wh": 1}],
)
def test_incomplete_or_non_numeric_energy_reading_is_a_protocol_error(
    result: codec.JSONObject,
) -> None:
    with pytest.raises(PlugProtocolError):
        codec.normalise_realtime(result)


@pytest.mark.parametrize("text", ['{"system":{"get_sysinfo":{}}}',
                                  '{"system":{"get_sysinfo":{}},"emeter":{"get_realtime":{}}}'])
def test_valid_raw_requests_are_accepted(text: str) -> None:
    assert codec.validate_request(json.loads(text)) == json.loads(text)


@pytest.mark.parametrize("value", [[], {}, {"system": 1}, {"system": {}}, "x", None])
def test_raw_requests_of_the_wrong_shape_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="object"):
        codec.validate_request(value)
