"""Pre-flight rows for a Podman container (``ferryman check --podman NAME``). Pure.

Source rows: Podman sees the container running; runc (its runtime, whose ``checkpoint``
drives CRIU) sees it under the given state root; Podman's cgroup manager is cgroupfs (runc is
run without ``--systemd-cgroup``); soft-dirty for pre-copy, lazy pages for post-copy, as for
runc. Destination rows, answered by its agent to a CheckRequest whose query names the
container (:func:`encode_query`): Podman installed there, its runtime and cgroup manager, the
image present (by id), the name and id free.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ferryman.errors import RemoteProtocolError
from ferryman.migration.runc_checks import container_kernel_rows
from ferryman.migration.verdict import Row, Status

KEY = "podman"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


@dataclass(frozen=True, slots=True)
class PodmanQuery:
    """The container the source asks about: id, name, image id."""

    id: str
    name: str
    image: str


def encode_query(q: PodmanQuery) -> str:
    return json.dumps({KEY: {"id": q.id, "name": q.name, "image": q.image}},
                      separators=(",", ":"))


def decode_query(text: str) -> PodmanQuery | None:
    """The Podman query in a CheckRequest, or None when it is another kind of query;
    RemoteProtocolError when it is a malformed Podman one."""
    if len(text) > 4096 or f'"{KEY}"' not in text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) != {KEY}:
        return None
    body = data[KEY]
    if not isinstance(body, dict) or set(body) != {"id", "name", "image"} or \
            not all(isinstance(v, str) and _ID.fullmatch(v.removeprefix("sha256:"))
                    for v in body.values()):
        raise RemoteProtocolError("CheckRequest: a Podman query needs a valid id, name and "
                                  "image, and nothing else")
    return PodmanQuery(body["id"], body["name"], body["image"])


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What the source found; ``problem``/``fix``: why the container cannot move."""

    name: str
    pid: int = 0
    image: str = ""
    runtime: str = ""
    cgroup_manager: str = ""
    problem: str | None = None
    fix: str = ""


@dataclass(frozen=True, slots=True)
class DestinationFacts:
    """What the destination's Podman says (``problem``: Podman is missing or broken)."""

    problem: str | None = None
    runtime: str = ""
    cgroup_manager: str = ""
    image: bool = False
    name_taken: bool = False
    id_taken: bool = False


def source_rows(here: str, facts: SourceFacts, *, postcopy_blocker: str | None,
                dirty_tracking: bool) -> list[Row]:
    rows: list[Row] = []
    if facts.problem is not None:
        rows.append(Row("container", "source", Status.FAIL, facts.problem,
                        facts.fix or "start the container"))
    else:
        rows.append(Row("container", "source", Status.PASS,
                        f"{facts.name} runs as PID {facts.pid} (image {facts.image})"))
        rows.append(Row("runtime", "source", Status.PASS,
                        f"runc dumps it (Podman's runtime {facts.runtime}; CRIU through "
                        f"runc checkpoint)"))
        rows.append(_cgroup_row("source", here, facts.cgroup_manager))
    return rows + container_kernel_rows(here, dirty_tracking, postcopy_blocker)


def _cgroup_row(side: str, node: str, manager: str) -> Row:
    if manager == "cgroupfs":
        return Row("podman.cgroup-manager", side, Status.PASS,
                   f"{node}: Podman's cgroup manager is cgroupfs")
    return Row("podman.cgroup-manager", side, Status.FAIL,
               f"{node}: Podman's cgroup manager is {manager or 'unknown'}; ferryman drives "
               f"runc without --systemd-cgroup",
               f'set cgroup_manager = "cgroupfs" in containers.conf on {node}')


def destination_rows(there: str, q: PodmanQuery, facts: DestinationFacts) -> list[Row]:
    if facts.problem is not None:
        return [Row("podman", "destination", Status.FAIL, f"{there}: {facts.problem}",
                    "install Debian's podman package there ('make setup' does)")]
    rows = [Row("podman", "destination", Status.PASS,
                f"{there}: Podman with runtime {facts.runtime}"),
            _cgroup_row("destination", there, facts.cgroup_manager)]
    if facts.image:
        rows.append(Row("podman.image", "destination", Status.PASS,
                        f"{there} has the image {q.image.removeprefix('sha256:')[:12]}"))
    else:
        rows.append(Row("podman.image", "destination", Status.FAIL,
                        f"{there} has no image {q.image.removeprefix('sha256:')[:12]}",
                        f"copy it there first ('podman save' here, 'podman load' on "
                        f"{there}, or pull it there)"))
    for taken, what in ((facts.name_taken, f"name {q.name!r}"), (facts.id_taken,
                                                                   f"id {q.id[:12]}")):
        if taken:
            rows.append(Row("podman.container", "destination", Status.FAIL,
                            f"{there} already has a container with the {what}",
                            "remove it there ('podman rm'), or move another one"))
    if not facts.name_taken and not facts.id_taken:
        rows.append(Row("podman.container", "destination", Status.PASS,
                        f"{there} has no container named {q.name!r} or with its id"))
    return rows
