"""Hostile field values: what a mutated field of a control message becomes.

Every path the fuzzer names points into its own marker tree (absolute, or relative with
``..`` climbing out of the agent's state directory into it) or carries its token in the name,
so that any file the agent creates from one can be found and attributed afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from tests.fuzz.frames import RawJson

DEPTH = 3000  # nesting far past Python's recursion limit, and inside Plan.target's 60000 bytes


@dataclass(frozen=True)
class FuzzContext:
    """What the strategies need to know about the agent under test and the fuzzer's marker."""

    cpuinfo: bytes  # the agent's own CPU image: a Plan carrying it passes the CPU check
    marker: Path  # a fresh directory tree the fuzzer names in messages; it must stay as made
    token: str  # in every relative file name the fuzzer makes up


INTS = (-1, 0, 1, 2, 255, 65535, 65536, 2**31, 2**32, 2**63 - 1, 2**63, 2**64,
        -(2**63) - 1, 10**30)
OTHERS: tuple[object, ...] = (True, False, None, "", [], {}, [1, "x"], {"a": 1}, {"type": "Hello"})
RAW = (RawJson("1.5"), RawJson("1e400"), RawJson("NaN"), RawJson("-Infinity"),
       RawJson("9" * 5000), RawJson("[" * DEPTH + "]" * DEPTH),
       RawJson('{"a":' * DEPTH + "1" + "}" * DEPTH), RawJson('"\\ud800"'),
       RawJson('"\\u0000"'), RawJson("[1,]"), RawJson("tru"))
TEXT = ("\x00", "a\x00b", "\x1b[2J\x1b]0;owned\x07", "line\n2026-01-01 forged INFO x", "\u202e",
        "\ud800", "é" * 300, "A" * 5000, "A" * 70000, "%s%n%x", "{}", "null",
        "\\", "\"", " ", "\t")


def paths(ctx: FuzzContext) -> st.SearchStrategy[str]:
    """Absolute and climbing paths into the marker tree, and names carrying the token."""
    m = ctx.marker
    climb = "../" * 12 + str(m.relative_to("/"))
    return st.sampled_from((
        str(m), f"{m}/x", f"{m}/deep/er", f"{m}/../{m.name}/y", f"{m}/x\x00.img", climb,
        f"{climb}/z", f"../{ctx.token}", f"../../{ctx.token}", f"../../../{ctx.token}",
        f"./{ctx.token}", f"{ctx.token}/../{ctx.token}", "..", "../..", ".", "/",
        f"{m}//..//{m.name}", f"{ctx.token}.log", "outcome", "parent", "pre-1", "pre-2",
    ))


def nested_json() -> st.SearchStrategy[str]:
    """JSON text (for the string fields that carry JSON) nested past any recursion limit."""
    return st.sampled_from(("[" * DEPTH + "]" * DEPTH, '{"a":' * DEPTH + "1" + "}" * DEPTH,
                            '{"kind":"runc","id":' + "[" * DEPTH + "]" * DEPTH + "}"))


def weird(ctx: FuzzContext) -> st.SearchStrategy[object]:
    """Any value at all, for any field: wrong types, sizes, paths, raw JSON."""
    return st.one_of(
        st.sampled_from(INTS), st.integers(), st.sampled_from(OTHERS), st.sampled_from(RAW),
        st.sampled_from(TEXT), paths(ctx), nested_json(), st.text(max_size=20),
        st.lists(paths(ctx), max_size=3),
    )


def container_target(ctx: FuzzContext) -> st.SearchStrategy[str]:
    """Plan.target for a container: the planned form with hostile parts, or worse."""
    pieces = st.one_of(paths(ctx), st.sampled_from(("rootfs", "box-1", None, 7, [], "a" * 300)))
    planned = st.fixed_dictionaries(
        {"kind": st.sampled_from(("runc", "docker", 1)), "id": pieces, "rootfs": pieces},
        optional={"bundle": paths(ctx), "sync": st.lists(paths(ctx), max_size=3),
                  ctx.token: pieces},
    ).map(json.dumps)
    return st.one_of(planned, nested_json(), st.sampled_from(("", "{", "[]", "null")))


def move_address(ctx: FuzzContext) -> st.SearchStrategy[str]:
    return st.sampled_from((
        "10.77.0.200/24@eth0", "192.0.2.7/1@lo", "10.77.0.200/32@lo", "10.77.0.200/0@eth0",
        f"10.77.0.200/24@{ctx.token}", "10.77.0.200/24@../../eth0", "::1/128@lo",
        "10.77.0.200/24@eth0\x00", "x/y@z", "@", "10.77.0.200/24",
    ))


def check_query(ctx: FuzzContext) -> st.SearchStrategy[str]:
    """CheckRequest.query: a well-formed query about files in the marker tree, or not."""
    stat_row = st.builds(lambda p, live: [p, "fd", "f", 1, 1, 0, 0, 1, live],
                         paths(ctx), st.booleans())
    query = st.fixed_dictionaries({
        "v": st.sampled_from((2, 1, "2", None)),
        "workload": st.just({"pid": 4242, "comm": "fuzz", "processes": 1,
                             "own_pid_ns": True, "own_net_ns": False, "own_time_ns": False,
                             "rss": 4096, "deleted_files": 0}),
        "ids": st.lists(st.sampled_from((1, 4242, 2**22, -1)), max_size=3),
        "files": st.lists(stat_row, max_size=2),
        "sockets": st.just([]),
        "synced": st.lists(paths(ctx), max_size=2),
        "omitted_files": st.just(0),
        "omitted_ids": st.just(0),
    }).map(json.dumps)
    return st.one_of(query, nested_json(), st.sampled_from(("", "{}", "[]", "\x00")))
