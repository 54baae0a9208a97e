"""Per-step timings of what runs before the freeze (the report's ``steps``, in ms).

``with timed(report.steps, "dry_run"): ...`` adds the step's wall time, measured with the
monotonic clock, to ``steps`` (steps that overlap each other each count their own time).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


@contextlib.contextmanager
def timed(steps: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.monotonic()
    try:
        yield
    finally:
        steps[name] = round(steps.get(name, 0.0) + (time.monotonic() - t0) * 1000, 1)
