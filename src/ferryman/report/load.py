"""Read a migration report back, from a JSON file or a dict, checked field by field.

The checks follow :class:`~ferryman.migration.report.MigrationReport`'s own type hints, so
a field added there is read (and checked) here without a change. Keys this version does not
know are ignored: a newer ferryman may write more. Pre-copy ``iterations`` are not part of
``MigrationReport`` yet; :class:`ReportView` carries them next to it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ferryman.errors import ReportError
from ferryman.migration.report import MigrationReport

MAX_REPORT_BYTES = 64 << 20  # a report is kilobytes; anything this big is not one

_HINT = "give the JSON file written by 'ferryman migrate --report FILE'"
_HINT_BENCH = "this looks like benchmark results: draw them with 'python -m bench.plot FILE'"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Iteration:
    """One pre-copy iteration: what CRIU's pre-dump wrote and how long it took."""

    pages_written: int
    pages_skipped: int
    seconds: float
    bytes: int


@dataclass(frozen=True, slots=True)
class ReportView:
    """A migration report plus what :class:`MigrationReport` does not carry yet."""

    report: MigrationReport
    iterations: tuple[Iteration, ...] = ()


class ShapeError(ValueError):
    """A value in a report document has the wrong type, or a required field is missing."""

    def __init__(self, where: str, problem: str) -> None:
        if not where:
            text = problem
        elif problem == "missing":
            text = f"{where} is missing"
        else:
            text = f"{where}: {problem}"
        super().__init__(text)
        self.where = where
        self.problem = problem


def parse_report(data: object) -> ReportView:
    """A decoded report document (``MigrationReport.to_json()`` shape) -> :class:`ReportView`.

    Raises :class:`ShapeError` naming the first field that does not fit.
    """
    if not isinstance(data, dict):
        raise ShapeError("", f"expected a JSON object, got {_kind(data)}")
    report = _dataclass(MigrationReport, data, "")
    return ReportView(report, parse_iterations(data.get("iterations")))


def parse_iterations(raw: object) -> tuple[Iteration, ...]:
    """Pre-copy iterations: a list of objects (or dataclasses) with :class:`Iteration`'s
    fields, or None when the migration had none."""
    if raw is None:
        return ()
    if isinstance(raw, list | tuple):
        raw = [dataclasses.asdict(i) if dataclasses.is_dataclass(i) and not isinstance(i, type)
               else i for i in raw]
    return tuple(_coerce(raw, list[Iteration], "iterations"))


def as_view(report: MigrationReport | ReportView | Mapping[str, Any]) -> ReportView:
    """Whatever the caller holds -> a :class:`ReportView` (a dict is checked as a file is)."""
    if isinstance(report, ReportView):
        return report
    if isinstance(report, MigrationReport):
        # Trusted, typed data from this process: not checked again; only its pre-copy
        # iterations (once MigrationReport has them) are brought into shape.
        return ReportView(report, parse_iterations(getattr(report, "iterations", None)))
    return parse_report(dict(report))


def load_report(path: Path) -> ReportView:
    """Read and check the report at ``path``; every failure is one :class:`ReportError`."""
    name = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_REPORT_BYTES + 1)
    except FileNotFoundError as exc:
        raise ReportError(name, "no such file", hint=_HINT) from exc
    except IsADirectoryError as exc:
        raise ReportError(name, "is a directory", hint=_HINT) from exc
    except OSError as exc:
        raise ReportError(name, f"cannot read it: {exc.strerror or exc}",
                          hint="check the path and its permissions") from exc
    if len(raw) > MAX_REPORT_BYTES:
        raise ReportError(name, f"larger than {MAX_REPORT_BYTES >> 20} MiB, not a report",
                          hint=_HINT)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ReportError(name, "not JSON (not even UTF-8 text)", hint=_HINT) from exc
    except json.JSONDecodeError as exc:
        raise ReportError(name, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                          hint=_HINT) from exc
    try:
        return parse_report(data)
    except ShapeError as exc:
        bench = isinstance(data, dict) and "cells" in data and "migration_id" not in data
        raise ReportError(name, f"not a migration report: {exc}",
                          hint=_HINT_BENCH if bench else _HINT) from exc


# -- the checker: a small reader for the type hints of JSON-shaped dataclasses ----------------


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer",
             float: "a number"}
    text = names.get(type(value), type(value).__name__)
    if isinstance(value, str | int | float):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        text = f"{text} {shown}"
    return text


def _describe(tp: object) -> str:
    names: dict[object, str] = {str: "a string", int: "an integer", float: "a number",
                                bool: "true or false"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) if a is not type(None) else "null"
                           for a in typing.get_args(tp))
    if origin is list or origin is tuple:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "an object"
    return getattr(tp, "__name__", str(tp))


def _dataclass(cls: type[T], value: object, where: str) -> T:
    if not isinstance(value, dict):
        raise ShapeError(where, f"expected an object, got {_kind(value)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        here = f"{where}.{f.name}" if where else f.name
        if f.name in value:
            kwargs[f.name] = _coerce(value[f.name], hints[f.name], here)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ShapeError(here, "missing")
    return cls(**kwargs)


def _coerce(value: object, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ShapeError:
                continue
        raise ShapeError(where, f"expected {_describe(tp)}, got {_kind(value)}")
    if origin is list or origin is tuple:
        if not isinstance(value, list):
            raise ShapeError(where, f"expected a list, got {_kind(value)}")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ShapeError(where, f"expected an object, got {_kind(value)}")
        item = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, where)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (str, bool):
        if isinstance(value, tp):
            return value
    else:
        return value  # a type this reader does not know: kept as it is
    raise ShapeError(where, f"expected {_describe(tp)}, got {_kind(value)}")
