"""Message construction: every field is checked, exactly typed and bounded."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import pytest

from ferryman.errors import LocalProtocolError
from ferryman.wire import (
    MESSAGE_TYPES,
    Abort,
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
from ferryman.wire._checks import MAX_MAPPING_ITEMS
from ferryman.wire.framing import FrameDecoder, encode
from ferryman.wire.limits import MAX_CHUNK_BYTES, MAX_LOG_TAIL_BYTES, MAX_TEXT_CHARS

from .helpers import SAMPLES

BAD_FILE_NAMES = ["../x", "a/b", "", ".", "..", "a\0b", "x" * 256, "/abs", "é" * 128]


@pytest.mark.parametrize("cls", MESSAGE_TYPES.values(), ids=lambda c: c.__name__)
def test_messages_are_frozen_slotted_dataclasses(cls: type[Message]) -> None:
    msg = SAMPLES[cls]
    assert dataclasses.is_dataclass(msg)
    assert not hasattr(msg, "__dict__")
    assert issubclass(cls, Message)
    for f in dataclasses.fields(msg):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(msg, f.name, getattr(msg, f.name))


def test_registry_names_are_class_names() -> None:
    assert all(name == cls.__name__ for name, cls in MESSAGE_TYPES.items())
    assert len(MESSAGE_TYPES) == 20


@pytest.mark.parametrize("name", BAD_FILE_NAMES)
def test_bad_file_names_are_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        FileChunk(name, 0, b"")
    with pytest.raises(LocalProtocolError):
        FileEnd(name, 0, "0" * 64)


@pytest.mark.parametrize("name", ["x" * 255, "é" * 127, "pages-1.img", "..x", ".hidden", "a b"])
def test_good_file_names_are_accepted(name: str) -> None:
    assert FileChunk(name, 0, b"").name == name


def _with(msg: Message, **changes: object) -> Message:
    return dataclasses.replace(msg, **changes)  # type: ignore[type-var]


INT_FIELDS = [
    (cls, f.name)
    for cls, msg in SAMPLES.items()
    for f in dataclasses.fields(msg)  # type: ignore[arg-type]
    if type(getattr(msg, f.name)) is int
]


@pytest.mark.parametrize(("cls", "name"), INT_FIELDS, ids=lambda x: getattr(x, "__name__", x))
@pytest.mark.parametrize("bad", [True, False, "1", 1.0, None, -1, 2**63])
def test_int_fields_are_strict(cls: type[Message], name: str, bad: object) -> None:
    with pytest.raises(LocalProtocolError, match=name):
        _with(SAMPLES[cls], **{name: bad})


STR_FIELDS = [
    (cls, f.name)
    for cls, msg in SAMPLES.items()
    for f in dataclasses.fields(msg)  # type: ignore[arg-type]
    if type(getattr(msg, f.name)) is str
]


@pytest.mark.parametrize(("cls", "name"), STR_FIELDS, ids=lambda x: getattr(x, "__name__", x))
@pytest.mark.parametrize("bad", [1, b"x", None, "\ud800"])
def test_str_fields_are_strict(cls: type[Message], name: str, bad: object) -> None:
    with pytest.raises(LocalProtocolError, match=name):
        _with(SAMPLES[cls], **{name: bad})


@pytest.mark.parametrize("bad", [bytearray(b"x"), memoryview(b"x"), "x", None])
def test_bytes_fields_are_exactly_bytes(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        FileChunk("a", 0, bad)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        _with(SAMPLES[Hello], cpuinfo=bad)


def test_bounds() -> None:
    FileChunk("a", 0, b"\0" * MAX_CHUNK_BYTES)
    with pytest.raises(LocalProtocolError):
        FileChunk("a", 0, b"\0" * (MAX_CHUNK_BYTES + 1))
    Error("x", "m" * MAX_TEXT_CHARS)
    with pytest.raises(LocalProtocolError):
        Error("x", "m" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(LocalProtocolError):
        Abort("m" * (MAX_TEXT_CHARS + 1))
    Failed("x", "", "t" * MAX_LOG_TAIL_BYTES)
    with pytest.raises(LocalProtocolError):
        Failed("x", "", "é" * (MAX_LOG_TAIL_BYTES // 2 + 1))  # counted in UTF-8 bytes
    for bad_code in ["", "x" * 65, "has space", "é"]:
        with pytest.raises(LocalProtocolError):
            Refused(bad_code, "")
    with pytest.raises(LocalProtocolError):
        _with(SAMPLES[Hello], node="")
    with pytest.raises(LocalProtocolError):
        Ready(65536)
    with pytest.raises(LocalProtocolError):
        Restored(0, {})
    with pytest.raises(LocalProtocolError):
        _with(SAMPLES[Hello], protocol_version=0)


@pytest.mark.parametrize("bad", ["", "x" * 65, "a b", "a/b", "é", "a.b"])
def test_migration_id(bad: str) -> None:
    Plan("A-z_09" * 10 + "abcd", "cold", 1, lazy=False)
    with pytest.raises(LocalProtocolError, match="migration_id"):
        Plan(bad, "cold", 1, lazy=False)


def test_plan_mode_and_lazy() -> None:
    for mode, lazy in [("cold", False), ("precopy", False), ("postcopy", True),
                       ("hybrid", False)]:
        assert Plan("m", mode, 1, lazy).lazy is lazy
    # hybrid turns lazy only with its final Iterate
    for mode, lazy in [("cold", True), ("precopy", True), ("postcopy", False), ("hybrid", True)]:
        with pytest.raises(LocalProtocolError, match="lazy"):
            Plan("m", mode, 1, lazy)
    with pytest.raises(LocalProtocolError, match="mode"):
        Plan("m", "auto", 1, lazy=False)
    with pytest.raises(LocalProtocolError, match="lazy"):
        Plan("m", "cold", 1, 0)  # type: ignore[arg-type]


def test_only_a_plan_that_can_turn_lazy_takes_the_lazy_relay() -> None:
    assert Plan("m", "postcopy", 1, True, lazy_relay=True).lazy_relay
    assert Plan("m", "hybrid", 1, False, lazy_relay=True).lazy_relay  # its final step
    for mode in ("cold", "precopy"):
        with pytest.raises(LocalProtocolError, match="lazy_relay"):
            Plan("m", mode, 1, False, lazy_relay=True)
    with pytest.raises(LocalProtocolError, match="lazy_relay"):
        Plan("m", "postcopy", 1, True, lazy_relay=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["AB" * 32, "a" * 63, "g" * 64, "a" * 65, ""])
def test_sha256_is_64_lowercase_hex(bad: str) -> None:
    with pytest.raises(LocalProtocolError, match="sha256"):
        FileEnd("a", 0, bad)


def test_mappings_are_checked_and_read_only() -> None:
    source = {"mem_track": True}
    hello = _with(SAMPLES[Hello], features=source)
    assert isinstance(hello.features, MappingProxyType)  # type: ignore[attr-defined]
    source["mem_track"] = False
    assert hello.features == {"mem_track": True}  # type: ignore[attr-defined]
    for bad in [{"x": 1}, {"x": "yes"}, {1: True}, {"": True}, {"a b": True}, [("x", True)],
                {f"k{i}": True for i in range(MAX_MAPPING_ITEMS + 1)}]:
        with pytest.raises(LocalProtocolError, match="features"):
            _with(SAMPLES[Hello], features=bad)
    bad_stats: Any
    for bad_stats in [{"x": True}, {"x": -1}, {"x": 1.5}, {"x": 2**63}]:
        with pytest.raises(LocalProtocolError, match="stats"):
            Restored(1, bad_stats)


def test_bytes_stay_out_of_repr() -> None:
    assert "data" not in repr(FileChunk("a", 0, b"secret-bytes"))
    assert "cpuinfo" not in repr(SAMPLES[Hello])
    assert repr(PagesComplete(1, 2, 3)) == ("PagesComplete(pages=1, bytes=2, elapsed_ms=3, "
                                            "faults=0, fault_wait_ms=0, fault_max_ms=0)")


def test_restore_counts_are_non_negative() -> None:
    with pytest.raises(LocalProtocolError):
        Restore(-1, 0)


def test_restore_kernel_is_a_boot_id_and_fifo_devices_an_int_mapping() -> None:
    assert Restore(1, 2).fifo_devices == {}
    with pytest.raises(LocalProtocolError, match="kernel"):
        Restore(1, 2, kernel="../etc")
    with pytest.raises(LocalProtocolError, match="fifo_devices"):
        Restore(1, 2, fifo_devices={"12": -1})
    with pytest.raises(LocalProtocolError, match="fifo_devices"):
        Restore(1, 2, fifo_devices={str(i): 1 for i in range(257)})


def test_iterate_indexes_start_at_two_and_only_a_final_set_is_lazy() -> None:
    assert Iterate(2) == Iterate(2, final=False, lazy=False)
    assert Iterate(1001, final=True, lazy=True).lazy
    for bad in (0, 1, 1002):
        with pytest.raises(LocalProtocolError, match="index"):
            Iterate(bad)
    with pytest.raises(LocalProtocolError, match="final"):
        Iterate(3, final=False, lazy=True)
    with pytest.raises(LocalProtocolError, match="final"):
        Iterate(3, final=1)  # type: ignore[arg-type]


def test_a_container_plan_and_its_sync_port_survive_framing() -> None:
    target = '{"kind":"runc","id":"c1","bundle":"/b/c1","sync":["/b/c1"]}'
    for msg in (Plan("m", "postcopy", 42, lazy=True, target=target),
                Ready(page_server_port=0, sync_port=40123)):
        dec = FrameDecoder()
        dec.receive_data(encode(msg))
        assert dec.maybe_message() == msg
    with pytest.raises(LocalProtocolError):
        Ready(page_server_port=1, sync_port=70000)
    with pytest.raises(LocalProtocolError):
        Plan("m", "cold", 1, lazy=False, target=3)  # type: ignore[arg-type]


def test_link_test_carries_at_most_a_chunk() -> None:
    assert LinkTest(b"\x00" * (4 << 20)).payload[:1] == b"\x00"
    assert LinkReport(4 << 20).bytes == 4 << 20
    with pytest.raises(LocalProtocolError):
        LinkTest(b"\x00" * ((4 << 20) + 1))
    with pytest.raises(LocalProtocolError):
        LinkReport(-1)


@pytest.mark.parametrize("address", ["", "10.0.0.2", "fd00::2", "::ffff:10.0.0.2"])
def test_a_ready_names_where_lazy_pages_come_from(address: str) -> None:
    msg = Ready(page_server_port=0, pages_from=address)
    dec = FrameDecoder()
    dec.receive_data(encode(msg))
    assert dec.maybe_message() == msg


@pytest.mark.parametrize("bad", ["10.0.0.2; flush ruleset", "host.example", "1" * 46, 7])
def test_a_ready_with_anything_but_an_address_there_is_refused(bad: object) -> None:
    with pytest.raises(LocalProtocolError, match="pages_from"):
        Ready(page_server_port=0, pages_from=bad)  # type: ignore[arg-type]


def test_only_a_cold_plan_streams_its_restore_and_it_may_take_the_lazy_relay() -> None:
    p = Plan("m", "cold", 1, False, streamed=True, lazy_relay=True)
    assert p.lazy_dump
    assert not p.lazy
    assert not Plan("m", "cold", 1, False).lazy_dump
    for mode in ("postcopy", "precopy", "hybrid"):
        with pytest.raises(LocalProtocolError, match="streamed"):
            Plan("m", mode, 1, mode == "postcopy", streamed=True)
    with pytest.raises(LocalProtocolError, match="lazy_relay"):
        Plan("m", "cold", 1, False, lazy_relay=True)  # not streamed: cold's own relay
