"""``ferryman serve --config FILE``: the agent's options as TOML, checked key by key.

Each key is a ``serve`` option without its dashes, with the same meaning::

    listen = "10.0.0.2:7070"
    pki = "/etc/ferryman/pki"
    name = "nodeB"
    state-dir = "/var/lib/ferryman"
    criu = "criu"
    runc = "runc"
    runc-root = "/run/runc"
    bundle-root = "/var/lib/ferryman/bundles"
    movable-addresses = ["10.0.0.0/24@eth0"]
    check-roots = ["/srv/data"]
    max-migrations = 4

Relative paths are relative to the file's directory. An unknown key, a value of the wrong
type or a bad value is one error naming the key and the file. :func:`parse` is pure; only
:func:`load` reads the file. ``cli/serve.py`` lets command-line flags override what the file
says.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferryman.cli.common import parse_endpoint
from ferryman.errors import UsageError
from ferryman.host.addresses import MovableNetwork, parse_movable
from ferryman.migration.prefault import SETTINGS


@dataclass(frozen=True, slots=True)
class FileOptions:
    """What a config file sets; None: not set there (the flag or the default decides)."""

    listen: tuple[str, int] | None = None
    pki: Path | None = None
    name: str | None = None
    state_dir: Path | None = None
    criu: str | None = None
    runc: str | None = None
    runc_root: Path | None = None
    bundle_root: Path | None = None
    movable_addresses: tuple[MovableNetwork, ...] | None = None
    check_roots: tuple[Path, ...] | None = None
    max_migrations: int | None = None
    launcher: bool | None = None
    prefault: str | None = None


class BadValue(ValueError):
    """A value the key does not take; the message says what it takes."""


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadValue("give a non-empty string")
    return value


def _path(base: Path) -> Callable[[object], Path]:
    def convert(value: object) -> Path:
        return base / _string(value)  # an absolute path stays as it is
    return convert


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadValue('give a list of strings, e.g. ["a", "b"]')
    return tuple(value)


def _endpoint(value: object) -> tuple[str, int]:
    try:
        return parse_endpoint(_string(value))
    except UsageError as exc:
        raise BadValue(exc.one_line()) from exc


def _movable(value: object) -> tuple[MovableNetwork, ...]:
    entries = _strings(value)
    try:
        return parse_movable(",".join(entries)) if entries else ()
    except UsageError as exc:
        raise BadValue(exc.one_line()) from exc


def _positive(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadValue("give a whole number of at least 1")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadValue("give true or false")
    return value


def _prefault(value: object) -> str:
    if value not in SETTINGS:
        raise BadValue(f"give one of {', '.join(SETTINGS)}")
    return str(value)


def _converters(base: Path) -> dict[str, Callable[[object], Any]]:
    path = _path(base)
    return {
        "listen": _endpoint,
        "pki": path,
        "name": _string,
        "state-dir": path,
        "criu": _string,
        "runc": _string,
        "runc-root": path,
        "bundle-root": path,
        "movable-addresses": _movable,
        "check-roots": lambda v: tuple(path(p) for p in _strings(v)),
        "max-migrations": _positive,
        "launcher": _bool,
        "prefault": _prefault,
    }


KEYS = tuple(_converters(Path("/")))


def parse(text: str, source: Path) -> FileOptions:
    """The options in ``text``, read from ``source`` (named in errors; relative paths are
    taken relative to its directory)."""
    try:
        data: Mapping[str, object] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML ({exc})",
                         hint="fix the file (see README, 'Running the agent')") from exc
    converters = _converters(source.parent)
    values: dict[str, Any] = {}
    for key, value in data.items():
        convert = converters.get(key)
        if convert is None:
            raise UsageError(f"{source}: unknown key {key!r}",
                             hint=f"the keys are {', '.join(KEYS)}")
        try:
            values[key.replace("-", "_")] = convert(value)
        except BadValue as exc:
            shown = json.dumps(value, default=str)  # TOML's spelling: true, "text", [...]
            raise UsageError(f"{source}: bad value for {key!r}: {shown}",
                             hint=str(exc)) from exc
    return FileOptions(**values)


def load(path: Path) -> FileOptions:
    """Read and parse the config file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read config file {path}: {reason}",
                         hint="give --config the path of a TOML file") from exc
    return parse(text, path.absolute())
