"""Hypothesis strategies for what the fuzzer sends: a valid conversation, then mutated.

A sequence starts as one of the source's valid conversations (:data:`SCENARIOS`, the cheap
ones far more often than those that make the agent run CRIU), as frames. Then 0-4 mutations:
a field's value, a field dropped, added or repeated, the message type, the body, the whole
header; messages dropped, repeated, swapped or inserted; a frame's bytes truncated, its sizes
lied about or garbage in between; the connection closed early. Last, the waits for answers,
a short pause (the agent busy with what it read) and the close (graceful or a reset).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

from hypothesis import strategies as st

from ferryman import wire
from tests.fuzz.frames import Frame, RawJson, prefix
from tests.fuzz.script import AWAITED, Await, Close, Pause, Script, Send, Step
from tests.fuzz.values import (
    FuzzContext,
    check_query,
    container_target,
    move_address,
    paths,
    weird,
)

Draw = Callable[..., object]
Item = Frame | Send  # a frame still to edit, or bytes already final

# Scenario names, repeated by weight: an accepted Plan costs the agent two CRIU runs (its CPU
# check and a page server), which would otherwise take most of the fuzzer's time
SCENARIOS = (["hello"] * 10 + ["abort"] * 12 + ["link"] * 5 + ["check"] * 4 + ["garbage"] * 4
             + ["move"] * 2 + ["cold"] * 2 + ["precopy"] + ["postcopy"] + ["container"])
IMAGE_NAMES = ("inventory.img", "ids-1.img", "pstree.img", "pages-1.img", "pagemap-1.img",
               "core-1.img", "stats-restore", "outcome", "restore.log", "parent", "pre-1",
               "pre-2", "cpuinfo.img", "lazy-pages.socket", "x" * 255)


def hello_message(cpuinfo: bytes) -> wire.Hello:
    """A valid Hello from node a (the name in the fuzzer's certificate)."""
    return wire.Hello(protocol_version=1, node="a", criu_version="4.2.1", features={},
                      cpuinfo=cpuinfo, free_memory=1 << 30, free_disk=1 << 30)


@st.composite
def _files(draw: Draw, names: tuple[str, ...] = IMAGE_NAMES) -> list[wire.Message]:
    """Image files as chunks and ends: mostly right, some with the wrong size or digest."""
    out: list[wire.Message] = []
    for name in draw(st.lists(st.sampled_from(names), max_size=3)):
        size = draw(st.sampled_from((0, 1, 4096, 70000)))
        data = bytes([size % 251]) * size
        if data:
            out.append(wire.FileChunk(name=name, offset=0, data=data))
        digest = hashlib.sha256(data).hexdigest()
        if draw(st.integers(0, 9)) == 0:
            digest = "0" * 64
        out.append(wire.FileEnd(name=name, size=len(data), sha256=digest))
    return out


@st.composite
def _cpuinfo(draw: Draw, ctx: FuzzContext) -> bytes:
    """The agent's own CPU image (the Plan passes its check), or that image damaged: root's
    CRIU parses it (``criu cpuinfo check``)."""
    data = ctx.cpuinfo
    if not data or draw(st.integers(0, 3)):
        return data
    at = draw(st.integers(0, len(data) - 1))
    how = draw(st.sampled_from(("flip", "cut", "grow")))
    if how == "cut":
        return data[:at]
    if how == "grow":
        return data[:at] + b"\xff" * draw(st.sampled_from((1, 8, 4096))) + data[at:]
    return data[:at] + bytes([data[at] ^ draw(st.sampled_from((0x01, 0x80, 0xFF)))]) + data[at + 1:]


def _plan(draw: Draw, mode: str, **fields: object) -> wire.Plan:
    mid = draw(st.from_regex(r"fz-[a-z0-9]{1,12}", fullmatch=True))
    return wire.Plan(migration_id=mid, mode=mode, pid=4242, lazy=mode == "postcopy",
                     tcp_established=draw(st.booleans()), **fields)  # type: ignore[arg-type]


@st.composite
def _conversation(draw: Draw, ctx: FuzzContext) -> list[wire.Message]:
    """One of the source's valid conversations with the destination."""
    kind = draw(st.sampled_from(SCENARIOS))
    plans = kind in ("cold", "precopy", "postcopy", "container", "move")
    cpuinfo = draw(_cpuinfo(ctx)) if plans else draw(st.sampled_from((b"", b"\x00" * 16)))
    hello = hello_message(cpuinfo)
    abort = wire.Abort(reason=draw(st.sampled_from(("fuzz", "\x1b[31mred\n", ""))))
    if kind == "hello":
        return [hello]
    if kind == "abort":
        return [hello, abort]
    if kind == "link":
        sizes = draw(st.lists(st.sampled_from((0, 1, 1024, 65536, wire.limits.MAX_CHUNK_BYTES)),
                              min_size=1, max_size=3))
        return [hello, *(wire.LinkTest(bytes(n)) for n in sizes), abort]
    if kind == "check":
        return [hello, wire.CheckRequest(query=draw(check_query(ctx))), abort]
    if kind == "garbage":
        return []
    if kind == "cold":
        return [hello, _plan(draw, "cold"), *draw(_files()), abort]
    if kind == "container":
        return [hello, _plan(draw, "cold", target=draw(container_target(ctx))), abort]
    if kind == "move":
        return [hello, _plan(draw, "cold", move_address=draw(move_address(ctx))), abort]
    if kind == "precopy":
        iterate = wire.Iterate(2, final=True, lazy=draw(st.booleans()))
        return [hello, _plan(draw, "precopy"), *draw(_files()), iterate,
                *draw(_files()), abort]
    lazy_first = ("inventory.img", "ids-1.img", "pstree.img")
    files = draw(_files(lazy_first))
    port = draw(st.sampled_from((0, 9, 65535)))
    return [hello, _plan(draw, "postcopy", page_server_port=port), *files,
            wire.Restore(file_count=len(files) // 2, total_bytes=0, page_server_port=port),
            abort]


# -- mutations of one frame -----------------------------------------------------------------

def _set_field(draw: Draw, ctx: FuzzContext, f: Frame) -> Frame:
    names = f.field_names()
    if not names:
        return _add_field(draw, ctx, f)
    name = draw(st.sampled_from(names))
    value = draw(weird(ctx) if name not in ("name", "migration_id") else
                 st.one_of(paths(ctx), weird(ctx)))
    pairs = tuple((k, value if k == name else v) for k, v in f.pairs)
    return replace(f, pairs=pairs, note=f"{f.note}{name}={_short(value)};")


def _drop_field(draw: Draw, ctx: FuzzContext, f: Frame) -> Frame:
    names = f.field_names() or ["type"]
    name = draw(st.sampled_from(names))
    return replace(f, pairs=tuple(p for p in f.pairs if p[0] != name), note=f"{f.note}-{name};")


def _add_field(draw: Draw, ctx: FuzzContext, f: Frame) -> Frame:
    key = draw(st.sampled_from((ctx.token, "__class__", "type", "path", "", "x" * 300)))
    value = draw(weird(ctx))
    return replace(f, pairs=(*f.pairs, (key, value)), note=f"{f.note}+{key[:12]}={_short(value)};")


def _repeat_field(draw: Draw, ctx: FuzzContext, f: Frame) -> Frame:
    i = draw(st.integers(0, len(f.pairs) - 1)) if f.pairs else 0
    pairs = (*f.pairs, f.pairs[i]) if f.pairs else f.pairs
    return replace(f, pairs=pairs, note=f"{f.note}dup;")


def _retype(draw: Draw, ctx: FuzzContext, f: Frame) -> Frame:
    new = draw(st.one_of(st.sampled_from(sorted(wire.MESSAGE_TYPES)), weird(ctx)))
    pairs = tuple(("type", new) if k == "type" else (k, v) for k, v in f.pairs)
    return replace(f, pairs=pairs, note=f"{f.note}type={_short(new)};")


def _rebody(draw: Draw, ctx: FuzzContext, f: Frame) -> Frame:
    how = draw(st.sampled_from(("grow", "cut", "empty", "invalid-utf8")))
    body = {"grow": f.body + b"\x00" * 7, "cut": f.body[: len(f.body) // 2], "empty": b"",
            "invalid-utf8": b"\xff\xfe" + f.body}[how]
    return replace(f, body=body, note=f"{f.note}body:{how};")


def _escape(draw: Draw, ctx: FuzzContext, f: Frame) -> Frame:
    return replace(f, ascii_only=not f.ascii_only)


def _junk_header(draw: Draw, ctx: FuzzContext, f: Frame) -> Frame:
    junk = draw(st.sampled_from((RawJson("[]"), RawJson("null"), RawJson("1"),
                                 RawJson("[" * 3000 + "]" * 3000))))
    return replace(f, pairs=(("type", junk),), body=b"", note=f"{f.note}header={_short(junk)};")


FRAME_MUTATIONS = (_set_field, _set_field, _set_field, _drop_field, _add_field, _repeat_field,
                   _retype, _rebody, _escape, _junk_header)


# -- mutations of the sequence and of the bytes -----------------------------------------------

def _bytes_of(item: Item) -> Send:
    return item if isinstance(item, Send) else Send(item.to_bytes(), item.label())


def _mangle_bytes(draw: Draw, item: Item) -> Send:
    send = _bytes_of(item)
    data = send.data
    how = draw(st.sampled_from(("truncate", "huge-n", "tiny-n", "short-n", "long-n",
                                "header-overrun", "flip", "garbage")))
    if how == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif how == "huge-n":
        data = prefix(draw(st.sampled_from((8 << 20 | 1, 0xFFFFFFFF, 1 << 30))), 0) + data[6:]
    elif how == "tiny-n":
        data = prefix(draw(st.integers(0, 1)), 0)
    elif how in ("short-n", "long-n"):
        delta = -3 if how == "short-n" else 5
        data = prefix(len(data) - 4 + delta, int.from_bytes(data[4:6], "big")) + data[6:]
    elif how == "header-overrun":
        data = prefix(len(data) - 4, 0xFFFF) + data[6:]
    elif how == "flip":
        at = draw(st.integers(0, max(0, len(data) - 1)))
        data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:] if data else data
    else:
        data = draw(st.binary(min_size=1, max_size=64)) + data
    return Send(data, f"{send.label}<{how}>")


def _mutate_items(draw: Draw, ctx: FuzzContext, items: list[Item]) -> list[Item]:
    op = draw(st.sampled_from(("frame",) * 6 + ("drop", "repeat", "swap", "insert", "bytes",
                                                  "bytes")))
    if op == "insert" or not items:
        extra = draw(st.sampled_from(sorted(_any_messages(), key=lambda m: type(m).__name__)))
        at = draw(st.integers(0, len(items)))
        return [*items[:at], Frame.of(extra), *items[at:]]
    i = draw(st.integers(0, len(items) - 1))
    item = items[i]
    if op == "frame" and isinstance(item, Frame):
        mutate = draw(st.sampled_from(FRAME_MUTATIONS))
        return [*items[:i], mutate(draw, ctx, item), *items[i + 1:]]
    if op == "drop":
        return items[:i] + items[i + 1:]
    if op == "repeat":
        return [*items[: i + 1], item, *items[i + 1:]]
    if op == "swap":
        j = draw(st.integers(0, len(items) - 1))
        items = list(items)
        items[i], items[j] = items[j], items[i]
        return items
    return [*items[:i], _mangle_bytes(draw, item), *items[i + 1:]]


def _any_messages() -> list[wire.Message]:
    """One of each message type, the destination's too (a source may not send those)."""
    return [
        wire.Hello(1, "a", "4.2.1", {}, b"", 1, 1), wire.Plan("fz-ins", "cold", 4242, False),
        wire.Ready(1), wire.Iterate(2), wire.Iterate(3, final=True, lazy=True),
        wire.Refused("x", "y"), wire.FileChunk("pstree.img", 0, b"\x01"),
        wire.FileEnd("pstree.img", 1, "0" * 64), wire.Restore(0, 0), wire.Restored(1, {}),
        wire.Failed("x", "y", "z"), wire.Commit(), wire.Abort("x"), wire.Committed(1),
        wire.Aborted(), wire.PagesComplete(1, 1, 1), wire.Error("x", "y"),
        wire.CheckRequest("{}"), wire.CheckReport("{}"), wire.LinkTest(b"x"),
        wire.LinkReport(1),
    ]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"


# -- the whole sequence ---------------------------------------------------------------------

@st.composite
def scripts(draw: Draw, ctx: FuzzContext) -> Script:
    """One fuzz sequence: a valid conversation, mutated, with its waits and its close."""
    items: list[Item] = [Frame.of(m) for m in draw(_conversation(ctx))]
    if not items:  # the garbage scenario
        items = [Send(draw(st.binary(min_size=1, max_size=200)), "garbage")]
    for _ in range(draw(st.sampled_from((0, 1, 1, 1, 2, 2, 3, 4)))):
        items = _mutate_items(draw, ctx, items)
    steps: list[Step] = []
    for item in items:
        send = _bytes_of(item)
        steps.append(send)
        if isinstance(item, Frame) and item.type_name in AWAITED and draw(st.integers(0, 5)):
            steps.append(Await())
    if steps and draw(st.integers(0, 7)) == 0:  # the connection goes early
        steps = steps[: draw(st.integers(0, len(steps) - 1))]
    if draw(st.integers(0, 3)) == 0:  # ... while the agent is busy with what it has read
        steps.append(Pause(draw(st.sampled_from((0.002, 0.005, 0.01, 0.03)))))
    steps.append(Close(abort=draw(st.booleans())))
    return Script(tuple(steps), cert=draw(st.sampled_from(("a",) * 9 + ("c",))),
                  linger=draw(st.sampled_from((0.0, 0.0, 0.05, 0.3))))
