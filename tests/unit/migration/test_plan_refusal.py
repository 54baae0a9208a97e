"""migration/plan.refusal: which verdicts stop a migration, and how it says so."""

from __future__ import annotations

from ferryman.errors import PreflightFailed
from ferryman.migration.plan import refusal
from ferryman.migration.verdict import ALL_MODES, LAZY_MODES, Row, Status, Verdict, merge

SUPPORTED = ("cold", "postcopy")


def row(check: str, status: Status, modes: frozenset[str] = ALL_MODES) -> Row:
    return Row(check, "destination", status, f"{check} is bad", f"fix {check}", modes)


def test_a_clean_verdict_passes() -> None:
    assert refusal(merge([], [], SUPPORTED), "cold", force=False) is None


def test_failures_refuse_even_with_force() -> None:
    v = merge([], [row("pids", Status.FAIL), row("files.mtime", Status.WARN)], SUPPORTED)
    why = refusal(v, "cold", force=True)
    assert isinstance(why, PreflightFailed)
    assert why.exit_code == 40
    assert why.failed == ["pids"]
    assert "pids: pids is bad" in why.message
    assert why.hint == "fix pids"


def test_warnings_refuse_without_force_only() -> None:
    v = merge([], [row("files.mtime", Status.WARN)], SUPPORTED)
    why = refusal(v, "cold", force=False)
    assert why is not None
    assert "warnings" in why.message
    assert "--force" in (why.hint or "")
    assert refusal(v, "cold", force=True) is None


def test_only_the_requested_mode_counts() -> None:
    v = merge([], [row("kernel.userfaultfd", Status.FAIL, LAZY_MODES)], SUPPORTED)
    assert refusal(v, "cold", force=False) is None
    why = refusal(v, "postcopy", force=False)
    assert why is not None
    assert why.failed == ["kernel.userfaultfd"]


def test_unsupported_mode() -> None:
    why = refusal(merge([], [], ("cold",)), "postcopy", force=True)
    assert why is not None
    assert "not supported" in why.message


def auto_mode(v: Verdict) -> str | None:
    """What --mode auto falls back to when its own choice is not allowed."""
    candidates = v.auto_candidates()
    return candidates[0] if candidates else None


def test_auto_mode_prefers_cold_then_what_is_left() -> None:
    assert auto_mode(merge([], [], SUPPORTED)) == "cold"
    disk = row("disk", Status.FAIL, frozenset({"cold", "precopy"}))
    assert auto_mode(merge([], [disk], SUPPORTED)) == "postcopy"
    warned = row("memory", Status.WARN, frozenset({"cold"}))
    assert auto_mode(merge([], [warned], SUPPORTED)) == "postcopy"  # warning-free first
    assert auto_mode(merge([], [row("pids", Status.FAIL)], SUPPORTED)) is None
