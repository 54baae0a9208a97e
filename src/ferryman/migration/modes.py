"""``--mode auto``: choose cold, precopy, postcopy or hybrid from measured facts.

Pure: the caller measures (FEATURE_CHECK on both nodes, workload RSS, a short dirty-rate probe,
a link bandwidth estimate) and passes the numbers in. Rules, in order:

1. **cold** when the predicted cold downtime ``rss / bandwidth + fixed_cost_ms`` fits the
   budget: nothing to iterate, no post-copy risk.
2. **precopy** when dirty tracking works (soft-dirty ``mem_track``, or the uffd-wp tracker's
   ``mem_track_uffd``: migration/plan.py:dirty_tracker) and pre-copy converges: the workload
   dirties at most ``converge_ratio`` (default 1/2) of what the link carries
   (``dirty_pages_per_s * page_size <= converge_ratio * bandwidth``), so each iteration copies
   at most about half of the previous one. An unknown dirty rate never counts as converging.
3. **hybrid** when dirty tracking works, pre-copy will not converge, and post-copy is allowed:
   pre-copy shrinks what it can, the budget policy switches to lazy pages when it stalls.
4. **postcopy** when there is no dirty tracking and post-copy is allowed.
5. **cold** otherwise, with a reason saying the budget will be missed.

Post-copy is *allowed* when the lazy-pages machinery works on both nodes and the user did not
pass ``--no-postcopy``. It is never chosen when a cold move fits, and never ahead of a
converging pre-copy: a link broken during the post-copy tail loses the workload
(docs/ARCHITECTURE.md, "Commit protocol, rollback, orphans").
Without a tracker there is no pre-dump at all (stock CRIU aborts without soft-dirty).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ferryman.host.pages import PAGE_SIZE
from ferryman.mode import Mode

__all__ = ["Mode", "ModeChoice", "choose_mode", "cold_downtime_ms"]


class ModeChoice(NamedTuple):
    mode: Mode
    reason: str


def cold_downtime_ms(rss_bytes: int, bandwidth_bytes_per_s: float, fixed_cost_ms: float) -> float:
    """Downtime of a cold migration: all memory copied while frozen, plus the fixed cost."""
    return rss_bytes / bandwidth_bytes_per_s * 1000 + fixed_cost_ms


def _mb(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1e6:.1f} MB/s"


def choose_mode(
    *,
    mem_track: bool,
    lazy_pages: bool,
    no_postcopy: bool,
    rss_bytes: int,
    dirty_pages_per_s: float | None,
    bandwidth_bytes_per_s: float,
    max_downtime_ms: float,
    fixed_cost_ms: float = 150.0,
    page_size: int = PAGE_SIZE,
    converge_ratio: float = 0.5,
) -> ModeChoice:
    """Pick the mode for ``--mode auto`` (rules in the module docstring).

    ``mem_track``: the source can track dirty memory (either tracker). ``lazy_pages``: lazy pages
    work on both nodes. ``dirty_pages_per_s``: from a short probe, ``None`` if not measured.
    """
    if rss_bytes < 0 or page_size < 1:
        raise ValueError("rss_bytes must be >= 0 and page_size >= 1")
    for name, value in (
        ("bandwidth_bytes_per_s", bandwidth_bytes_per_s),
        ("max_downtime_ms", max_downtime_ms),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be finite and > 0, got {value}")
    if not (math.isfinite(fixed_cost_ms) and fixed_cost_ms >= 0):
        raise ValueError(f"fixed_cost_ms must be finite and >= 0, got {fixed_cost_ms}")
    if dirty_pages_per_s is not None and not (
        math.isfinite(dirty_pages_per_s) and dirty_pages_per_s >= 0
    ):
        raise ValueError(f"dirty_pages_per_s must be finite and >= 0, got {dirty_pages_per_s}")
    if not (0 < converge_ratio < 1):
        raise ValueError(f"converge_ratio must be in (0, 1), got {converge_ratio}")

    cold_ms = cold_downtime_ms(rss_bytes, bandwidth_bytes_per_s, fixed_cost_ms)
    cold = f"cold downtime {cold_ms:.0f} ms"
    budget = f"budget {max_downtime_ms:.0f} ms"
    if cold_ms <= max_downtime_ms:
        return ModeChoice(Mode.COLD, f"{cold} fits {budget}")

    lazy_ok = lazy_pages and not no_postcopy
    why_no_lazy = (
        "--no-postcopy was given" if no_postcopy else "lazy pages are not available on both nodes"
    )
    if mem_track:
        if dirty_pages_per_s is None:
            rate = "dirty rate not measured"
            converges = False
        else:
            dirty_bps = dirty_pages_per_s * page_size
            rate = f"dirty {_mb(dirty_bps)} vs link {_mb(bandwidth_bytes_per_s)}"
            converges = dirty_bps <= converge_ratio * bandwidth_bytes_per_s
        if converges:
            return ModeChoice(Mode.PRECOPY, f"{cold} over {budget}; pre-copy converges ({rate})")
        if lazy_ok:
            return ModeChoice(
                Mode.HYBRID, f"{cold} over {budget}; pre-copy may not converge ({rate})"
            )
        return ModeChoice(
            Mode.COLD,
            f"{cold} over {budget} will be missed: pre-copy may not converge ({rate})"
            f" and {why_no_lazy}",
        )
    if lazy_ok:
        return ModeChoice(Mode.POSTCOPY, f"{cold} over {budget}; no dirty tracking (mem_track)")
    return ModeChoice(
        Mode.COLD,
        f"{cold} over {budget} will be missed: no dirty tracking (mem_track) and {why_no_lazy}",
    )
