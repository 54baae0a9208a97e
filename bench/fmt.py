"""Formatting helpers shared by the Markdown report's sections."""

from __future__ import annotations

from typing import Any

from bench.stats import BASELINES, BY_HAND, BY_HAND_TLS, FERRYMAN, TOOLS

LABEL = {FERRYMAN: "ferryman", BY_HAND: "by hand", BY_HAND_TLS: "by hand TLS"}


def ms(s: dict[str, Any] | None, digits: int = 0) -> str:
    """``median [min-max]`` of a summary (only the median for one value); ``-`` if none."""
    if not s:
        return "-"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def x(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}x"


def mib(v: float | int | None) -> str:
    return "-" if v is None else f"{v / (1 << 20):.0f}"


def triple(t: dict[str, Any], metric: str, digits: int = 0,
           tools: tuple[str, ...] = TOOLS) -> str:
    """One column per tool: ferryman | by hand | by hand TLS."""
    return " | ".join(ms(t[tool].get(metric), digits) for tool in tools)


def ratios(r: dict[str, Any], key: str, bases: tuple[str, ...] = BASELINES) -> str:
    """ferryman / each baseline: ``vs by hand / vs by hand TLS``."""
    return " / ".join(x(r[b].get(key)) for b in bases)


def multiples(s: dict[str, Any], key: str, digits: int = 1,
              tools: tuple[str, ...] = TOOLS) -> str:
    """A floor multiple per tool, in one cell: ``ferryman / by hand / by hand TLS``."""
    return " / ".join(x((s["multiples"].get(t) or {}).get(key), digits) for t in tools)


def ok_counts(s: dict[str, Any], tools: tuple[str, ...] = TOOLS) -> str:
    return " ".join(f"{s['n_ok'][tool]}/{s['n_runs'][tool]}" for tool in tools)


def floors(s: dict[str, Any]) -> str:
    """The cell's floors: RSS / TCP and RSS / memcpy bandwidth, ms."""
    fl = s["floors_ms"]
    return f"{fl['tcp']:.0f} / {fl['memcpy']:.0f}" if fl["tcp"] and fl["memcpy"] else "-"
