"""The migration's plan: which mode runs, decided once, before anything is planned with the peer.

Pure. :func:`decide` takes what was asked (``--mode``, ``--no-postcopy``, ``--force``), the
pre-flight verdict (None for a container: runc and the destination's plan check those), the
``--mode auto`` choice when one was measured, and both nodes' Hello facts, and returns a
frozen :class:`Plan` or raises why the migration must not start. Nothing reassigns the mode
afterwards: the SOURCE role reads ``plan.mode`` (agent/source.py), the wire's
``Plan.lazy`` is ``plan.lazy`` (:attr:`Mode.lazy_from_start`), and whether the budget policy
may switch pre-copy to a lazy final step is ``plan.postcopy_allowed``.

Rules, in order:

1. **the mode**: the one asked for; ``auto`` takes the measured choice when the verdict
   allows it, else the verdict's first candidate (warning-free first, cold first), and for a
   container (no verdict) cold, which risks nothing;
2. **the verdict** (process trees): :func:`refusal` (``--force`` passes warnings, never
   failures);
3. **feature gates**: lazy modes need lazy pages on both nodes (:func:`postcopy_blocker`),
   pre-copying modes need a dirty-page tracker on the source (:func:`dirty_tracker`:
   soft-dirty, or uffd-wp for a process tree), and the destination needs room for the
   images (all the memory unless the dump is lazy from the start, plus a margin);
4. **post-copy allowed** (the budget policy's switch): not ``--no-postcopy``, and lazy pages
   work on both nodes;
5. **a streamed cold restore** (:func:`streams`): a cold process tree whose pre-flight lets
   post-copy through, with lazy pages on both nodes, is dumped lazily and its pages are
   fetched straight into the restored tree, which stays stopped until the last page is
   there (``wire.Plan.streamed``); the source keeps its copy until then, as cold always
   does. No page file is written or read on the destination, which halves the frozen
   window at 1 GiB. ``--cold-restore images`` keeps the page files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ferryman.errors import CriuFeatureMissing, FerrymanError, PreflightFailed
from ferryman.migration.modes import ModeChoice
from ferryman.migration.verdict import Status, Verdict
from ferryman.mode import Mode

__all__ = ["DISK_MARGIN", "Node", "Plan", "PlanOptions", "decide", "dirty_tracker",
           "postcopy_blocker", "precopy_blocker", "refusal", "streams"]

DISK_MARGIN: Final = 64 << 20  # bytes the destination keeps free beyond the images


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """What the user asked besides the mode: ``--no-postcopy``, ``--force``."""

    no_postcopy: bool = False
    force: bool = False
    stream_cold: bool = True  # --cold-restore streamed (default) or images


@dataclass(frozen=True, slots=True)
class Node:
    """A node as its Hello describes it: name, feature map, free disk for images."""

    name: str
    features: Mapping[str, bool]
    free_disk: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """The decided migration: its mode (never ``AUTO``), whether the budget policy may turn
    the final step lazy, and why ``auto`` chose this mode ("" when it was asked for)."""

    mode: Mode
    postcopy_allowed: bool
    reason: str = ""
    tracker: str | None = None  # pre-copying modes: "soft-dirty" or "uffd-wp"
    streamed: bool = False  # cold: the pages go straight into the tree held stopped (rule 5)

    def __post_init__(self) -> None:
        if not self.mode.decided:
            raise ValueError("a Plan's mode is decided: not auto")
        if self.streamed and self.mode is not Mode.COLD:
            raise ValueError("only a cold Plan streams its restore")

    @property
    def lazy(self) -> bool:
        """The Plan's own dump is lazy (``wire.Plan.lazy``)."""
        return self.mode.lazy_from_start

    @property
    def lazy_dump(self) -> bool:
        """The Plan's own dump is lazy: lazy from the start, or a streamed cold one."""
        return self.lazy or self.streamed

    @property
    def pre_copies(self) -> bool:
        return self.mode.pre_copies


def postcopy_blocker(features: Mapping[str, bool], node: str) -> str | None:
    """Why post-copy cannot work with this node's features, or None."""
    if not features.get("lazy_pages", False):
        return (f"{node}: the kernel lacks userfaultfd lazy pages; use --mode cold "
                "(or a kernel with CONFIG_USERFAULTFD)")
    if not features.get("lazy_pipes", False):
        return (f"{node}: fs.pipe-max-size is below 4 MiB and CRIU lacks CAP_SYS_RESOURCE; "
                "run 'sysctl -w fs.pipe-max-size=4194304' there")
    return None


def streams(mode: Mode, verdict: Verdict | None, nodes: tuple[Node, ...], *,
            asked: bool, container: bool) -> bool:
    """Rule 5: whether a cold migration streams its restore. Only a process tree (a
    container's restore is runc's or Podman's), only where the pre-flight (when it ran)
    found nothing that stops post-copy but not cold (what a lazy dump cannot move goes the
    page files' way), and only with lazy pages on both nodes."""
    if mode is not Mode.COLD or not asked or container:
        return False
    if verdict is not None:
        if Mode.POSTCOPY not in verdict.supported:
            return False
        # what would stop post-copy but not cold: something a lazy dump or restore cannot do
        if any(not r.concerns(Mode.COLD)
               for r in verdict.blocking(Mode.POSTCOPY, force=False)):
            return False
    return all(postcopy_blocker(n.features, n.name) is None for n in nodes)


def dirty_tracker(features: Mapping[str, bool], *, container: bool = False) -> str | None:
    """The dirty-page tracker pre-copy uses on a source with ``features``, or None.

    ``soft-dirty`` where the kernel has it (CRIU's ``mem_track``), else ``uffd-wp``
    (userfaultfd async write-protect, ``mem_track_uffd``: :mod:`ferryman.host.wptrack`) for
    a process tree; a runc container pre-dumps through runc, which knows only soft-dirty.
    """
    if features.get("mem_track", False):
        return "soft-dirty"
    if features.get("mem_track_uffd", False) and not container:
        return "uffd-wp"
    return None


def precopy_blocker(features: Mapping[str, bool], node: str, *,
                    container: bool = False) -> str | None:
    """Why pre-copy cannot track dirty pages on source ``node``, or None."""
    if dirty_tracker(features, container=container) is not None:
        return None
    if container and features.get("mem_track_uffd", False):
        return (f"{node}: runc pre-dumps a container only with soft-dirty tracking, which "
                "this kernel lacks (CONFIG_MEM_SOFT_DIRTY); use --mode cold or postcopy")
    return (f"{node}: no dirty-page tracker: the kernel has neither soft-dirty "
            "(CONFIG_MEM_SOFT_DIRTY) nor userfaultfd async write-protect with PAGEMAP_SCAN "
            "(Linux 6.7+, x86-64, ferryman's CRIU patch); use --mode cold or postcopy")


def refusal(verdict: Verdict, mode: Mode, *, force: bool) -> PreflightFailed | None:
    """Why ``ferryman migrate --mode MODE`` must not go on, or None."""
    if mode not in verdict.supported:
        return PreflightFailed(f"mode {mode} is not supported by both nodes",
                               failed=[], hint=f"use one of: {', '.join(verdict.supported)}")
    blocking = verdict.blocking(mode, force=force)
    if not blocking:
        return None
    fails = [r for r in blocking if r.status is Status.FAIL]
    first = (fails or blocking)[0]
    if fails:
        what = "; ".join(f"{r.check}: {r.detail}" for r in fails)
        hint = first.fix
    else:
        what = "warnings: " + "; ".join(f"{r.check}: {r.detail}" for r in blocking)
        hint = f"{first.fix}; or accept the warnings with --force"
    return PreflightFailed(f"pre-flight check refused {mode} migration: {what}",
                           failed=[r.check for r in blocking], hint=hint)


def auto_mode(verdict: Verdict, choice: ModeChoice | None, *, no_postcopy: bool
              ) -> tuple[Mode | None, str]:
    """``--mode auto``'s pure part: the measured ``choice`` when the verdict allows it, else
    the verdict's first candidate; with the reason. (None, "") when no mode is allowed."""
    candidates = verdict.auto_candidates(no_postcopy=no_postcopy)
    if not candidates:
        return None, ""
    if choice is None:
        return candidates[0], "first mode the pre-flight allows"
    if choice.mode in candidates:
        return choice.mode, choice.reason
    return candidates[0], (f"{choice.reason}; {choice.mode} is not allowed here, "
                           f"so {candidates[0]}")


def decide(requested: Mode, *, verdict: Verdict | None, source: Node, destination: Node,
           rss_bytes: int, options: PlanOptions = PlanOptions(),
           auto: ModeChoice | None = None, container: bool = False) -> Plan:
    """The plan, or PreflightFailed / CriuFeatureMissing / FerrymanError saying why not.

    ``verdict`` None: a container (rule 1 makes ``auto`` cold; rule 2 does not apply).
    ``auto``: the measured choice of :func:`ferryman.migration.modes.choose_mode`.
    ``container``: a runc or Podman container (pre-dumped by runc: soft-dirty only; restored
    by runc or Podman: never streamed).
    """
    mode, reason = _mode(requested, verdict, auto, options)
    lazy_ok = not options.no_postcopy and all(
        postcopy_blocker(n.features, n.name) is None for n in (source, destination))
    if mode.lazy:
        for node in (source, destination):
            why = postcopy_blocker(node.features, node.name)
            if why is not None:
                raise CriuFeatureMissing("lazy pages", why)
    streamed = streams(mode, verdict, (source, destination), asked=options.stream_cold,
                       container=container)
    need = (0 if mode.lazy_from_start or streamed else rss_bytes) + DISK_MARGIN
    if destination.free_disk < need:
        raise FerrymanError(
            f"the destination has {destination.free_disk >> 20} MiB free for images, the "
            f"workload needs about {need >> 20} MiB",
            hint="free disk space in the destination agent's --state-dir")
    tracker = None
    if mode.pre_copies:
        why = precopy_blocker(source.features, source.name, container=container)
        if why is not None:
            raise CriuFeatureMissing("dirty-page tracking", why)
        tracker = dirty_tracker(source.features, container=container)
    return Plan(mode, postcopy_allowed=lazy_ok, reason=reason, tracker=tracker,
                streamed=streamed)


def _mode(requested: Mode, verdict: Verdict | None, auto: ModeChoice | None,
          options: PlanOptions) -> tuple[Mode, str]:
    """Rules 1 and 2: the mode, refused (PreflightFailed) when the verdict rules it out."""
    if verdict is None:
        return (requested, "") if requested.decided else \
            (Mode.COLD, "a container: the process pre-flight does not apply; cold risks nothing")
    if requested.decided:
        mode: Mode | None = requested
        reason = ""
    else:
        mode, reason = auto_mode(verdict, auto, no_postcopy=options.no_postcopy)
    if mode is None:
        fails = verdict.failures()
        raise PreflightFailed("pre-flight check: no mode can move this workload",
                              failed=[r.check for r in fails],
                              hint=fails[0].fix if fails else "see 'ferryman check'")
    why = refusal(verdict, mode, force=options.force)
    if why is not None:
        raise why
    return mode, reason
