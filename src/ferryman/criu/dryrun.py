"""A dry-run dump: would ``criu dump`` succeed on this tree? Asked at the cost of a short freeze.

CRIU 4.2.1 has no check-only dump, and a real ``dump --leave-running`` copies every page while
the tree is frozen (~0.6-1 s per GiB here). So we run the dump CRIU uses for post-copy,
``--lazy-pages``: every step of a real dump runs (tasks, threads, files, sockets, namespaces,
mounts, cgroups, all written as images), but anonymous memory is only *described*: its pages
are taken into pipes by reference (vmsplice) and never copied. Then:

* CRIU says ``post-dump``: the dump succeeded. We answer failure, so CRIU unlocks the network
  and drops its link remaps as after any failed dump;
* CRIU opens its lazy page server and says ``status-ready``: we answer failure, so the page
  server never accepts a connection; CRIU drops the pipes and resumes every task where it was.

The freeze therefore costs the non-memory part of a dump, not a memory copy. Our CRIU build
does not even scan or splice those lazy pages for a dry run (``dry_run``: FERRYMAN_DRY_RUN,
scripts/criu-patches/dry-run-no-lazy-pages.patch): frozen 12-16 ms for a 256 MiB Python
process, 18-21 ms for 1 GiB, where taking the pages into pipes froze it 19-24 and 56-67 ms
(2026-12-06). It is measured with our clock from the
``pre-dump`` notification (sent just before CRIU seizes the tasks) to the end of the call
(just after it resumed them): an upper bound of what the workload saw. The network lock is
skipped (``SKIP``): nothing leaves the node, and nftables costs ~15 ms of freeze. Without the
lock a segment can arrive while CRIU reads a socket's queue in repair mode, and the queue's
size and its contents then disagree (``recv failed (0, want 4)`` from libsoccr, seen once in
~60 dry runs of an echo server answering every 10 ms): a race with the traffic, not a
property of the workload, so :func:`transient` says so and the caller tries once more.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ferryman.criu.client import Criu
from ferryman.criu.logs import first_error
from ferryman.errors import CriuError

LOG_FILE = "dry-run.log"
_DECLINED = ("post-dump", "status-ready")
_RACES = ("recv failed (",)  # libsoccr reading a live socket's queue (see above)


@dataclass(frozen=True, slots=True)
class DryRun:
    """The outcome: ``ok`` when CRIU dumped everything; ``reason`` (CRIU's first error) when
    not. ``freeze_ms`` bounds how long the tree was frozen; ``image_bytes`` is the size of the
    images written (everything but the lazy memory pages)."""

    ok: bool
    freeze_ms: float | None
    reason: str | None
    log_path: Path
    image_bytes: int


async def dry_run_dump(criu: Criu, pid: int, images_dir: Path, *,
                       tcp_established: bool = False,
                       clock: Callable[[], float] = time.monotonic) -> DryRun:
    """Dry-run dump of the tree at ``pid`` into ``images_dir`` (which it leaves holding only
    the log). The tree keeps running; it is frozen for ``freeze_ms`` at most."""
    marks: dict[str, float] = {}

    async def on_notify(script: str, _pid: int) -> bool:
        marks.setdefault(script, clock())
        return script not in _DECLINED

    error: CriuError | None = None
    try:
        # The same request builder and swrk session as every dump (criu/requests.py).
        await criu.dump(pid, images_dir, on_notify=on_notify, lazy=True, leave_running=True,
                        tcp_established=tcp_established, network_lock=False,
                        log_file=LOG_FILE, action="dump (dry run)", dry_run=True)
    except CriuError as exc:
        error = exc
    finally:
        end = clock()
    image_bytes = _remove_images(images_dir)
    ok = "post-dump" in marks
    start = marks.get("pre-dump")
    freeze_ms = (end - start) * 1000 if start is not None and "query-ext-files" in marks \
        else None
    reason = None if ok else (first_error(images_dir / LOG_FILE)
                              or (error.reason if error is not None else None)
                              or "criu gave no reason")
    return DryRun(ok=ok, freeze_ms=freeze_ms, reason=reason, log_path=images_dir / LOG_FILE,
                  image_bytes=image_bytes)


def transient(result: DryRun) -> bool:
    """The dry run failed on a race with the live connections' traffic: worth one retry."""
    return not result.ok and any(r in (result.reason or "") for r in _RACES)


def _remove_images(images_dir: Path) -> int:
    total = 0
    for p in images_dir.iterdir():
        if p.name == LOG_FILE:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            continue
        total += p.stat().st_size
        p.unlink()
    return total

