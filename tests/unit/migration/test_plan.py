"""migration/plan.decide: the mode decided once, for every mode asked for, and every refusal."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from ferryman.errors import CriuFeatureMissing, FerrymanError, PreflightFailed
from ferryman.migration.modes import ModeChoice
from ferryman.migration.plan import DISK_MARGIN, Node, Plan, PlanOptions, decide
from ferryman.migration.verdict import ALL_MODES, LAZY_MODES, Row, Status, Verdict, merge
from ferryman.mode import MODES, Mode

ALL = {"lazy_pages": True, "lazy_pipes": True, "mem_track": True}
GIB = 1 << 30
SRC = Node("a", ALL)
DST = Node("b", ALL, free_disk=2 * GIB)
RSS = 512 << 20
ASKED = PlanOptions()


def verdict(*rows: Row, supported: tuple[Mode, ...] = MODES) -> Verdict:
    return merge([], rows, supported)


def row(check: str, status: Status, modes: frozenset[Mode] = ALL_MODES) -> Row:
    return Row(check, "destination", status, f"{check} is bad", f"fix {check}", modes)


def plan(requested: Mode, v: Verdict | None = None, *, src: Node = SRC, dst: Node = DST,
         options: PlanOptions = ASKED, auto: ModeChoice | None = None) -> Plan:
    return decide(requested, verdict=v if v is not None else verdict(), source=src,
                  destination=dst, rss_bytes=RSS, options=options, auto=auto)


@pytest.mark.parametrize("mode", MODES)
def test_a_mode_asked_for_is_the_plan(mode: Mode) -> None:
    p = plan(mode)
    assert p.mode is mode
    assert p.lazy is (mode is Mode.POSTCOPY)
    assert p.pre_copies is (mode in (Mode.PRECOPY, Mode.HYBRID))
    assert p.postcopy_allowed
    assert p.reason == ""


def test_the_plan_is_frozen_and_never_auto() -> None:
    p = plan(Mode.COLD)
    with pytest.raises(FrozenInstanceError):
        p.mode = Mode.POSTCOPY  # type: ignore[misc]
    with pytest.raises(ValueError, match="auto"):
        Plan(Mode.AUTO, postcopy_allowed=False)


def test_auto_takes_the_measured_choice_when_allowed() -> None:
    p = plan(Mode.AUTO, auto=ModeChoice(Mode.PRECOPY, "pre-copy converges"))
    assert (p.mode, p.reason) == (Mode.PRECOPY, "pre-copy converges")


def test_auto_falls_back_to_the_first_candidate_and_says_why() -> None:
    v = verdict(row("kernel.userfaultfd", Status.FAIL, LAZY_MODES))
    p = plan(Mode.AUTO, v, auto=ModeChoice(Mode.HYBRID, "may not converge"))
    assert p.mode is Mode.COLD
    assert p.reason == "may not converge; hybrid is not allowed here, so cold"


def test_auto_with_no_postcopy_never_chooses_a_lazy_mode() -> None:
    v = verdict(row("disk", Status.FAIL, frozenset({Mode.COLD, Mode.PRECOPY})))
    with pytest.raises(PreflightFailed, match="no mode can move"):
        plan(Mode.AUTO, v, options=PlanOptions(no_postcopy=True),
             auto=ModeChoice(Mode.POSTCOPY, "x"))
    assert plan(Mode.AUTO, v, auto=ModeChoice(Mode.POSTCOPY, "x")).mode is Mode.POSTCOPY


def test_a_container_has_no_verdict_and_auto_is_cold() -> None:
    p = decide(Mode.AUTO, verdict=None, source=SRC, destination=DST, rss_bytes=RSS)
    assert p.mode is Mode.COLD
    assert "container" in p.reason
    assert decide(Mode.HYBRID, verdict=None, source=SRC, destination=DST,
                  rss_bytes=RSS).mode is Mode.HYBRID


def test_a_failed_row_refuses_its_modes_only() -> None:
    v = verdict(row("kernel.userfaultfd", Status.FAIL, LAZY_MODES))
    for mode in (Mode.POSTCOPY, Mode.HYBRID):
        with pytest.raises(PreflightFailed, match=r"kernel\.userfaultfd"):
            plan(mode, v)
    assert plan(Mode.COLD, v).mode is Mode.COLD


def test_warnings_need_force_failures_never_pass() -> None:
    v = verdict(row("files.mtime", Status.WARN), row("pids", Status.FAIL,
                                                      frozenset({Mode.PRECOPY})))
    with pytest.raises(PreflightFailed, match=r"warnings: files\.mtime") as refused:
        plan(Mode.COLD, v)
    assert "--force" in str(refused.value.hint)
    assert plan(Mode.COLD, v, options=PlanOptions(force=True)).mode is Mode.COLD
    with pytest.raises(PreflightFailed, match="pids"):
        plan(Mode.PRECOPY, v, options=PlanOptions(force=True))


def test_a_mode_one_node_does_not_implement_is_refused() -> None:
    with pytest.raises(PreflightFailed, match="not supported"):
        plan(Mode.HYBRID, verdict(supported=(Mode.COLD, Mode.POSTCOPY)))


@pytest.mark.parametrize("mode", [Mode.POSTCOPY, Mode.HYBRID])
@pytest.mark.parametrize("missing", ["lazy_pages", "lazy_pipes"])
@pytest.mark.parametrize("side", ["source", "destination"])
def test_lazy_modes_need_lazy_pages_on_both_nodes(mode: Mode, missing: str, side: str) -> None:
    node = Node("x", {**ALL, missing: False}, free_disk=2 * GIB)
    src, dst = (node, DST) if side == "source" else (SRC, node)
    with pytest.raises(CriuFeatureMissing, match="lazy pages") as missing_there:
        plan(mode, src=src, dst=dst)
    assert str(missing_there.value.hint).startswith("x: ")
    p = plan(Mode.PRECOPY, src=src, dst=dst)  # still possible, without a lazy final step
    assert not p.postcopy_allowed


@pytest.mark.parametrize("mode", [Mode.PRECOPY, Mode.HYBRID])
def test_pre_copying_modes_need_a_dirty_tracker_on_the_source(mode: Mode) -> None:
    none = {**ALL, "mem_track": False, "mem_track_uffd": False}
    with pytest.raises(CriuFeatureMissing, match="dirty-page tracking") as missing:
        plan(mode, src=Node("a", none))
    assert "a: no dirty-page tracker" in str(missing.value.hint)
    assert "CONFIG_MEM_SOFT_DIRTY" in str(missing.value.hint)
    plan(mode, dst=Node("b", none, free_disk=2 * GIB))  # not needed there


@pytest.mark.parametrize("mode", [Mode.PRECOPY, Mode.HYBRID])
def test_the_plan_names_the_tracker_soft_dirty_first(mode: Mode) -> None:
    assert plan(mode).tracker == "soft-dirty"
    both = Node("a", {**ALL, "mem_track_uffd": True})
    assert plan(mode, src=both).tracker == "soft-dirty"
    uffd = Node("a", {**ALL, "mem_track": False, "mem_track_uffd": True})
    assert plan(mode, src=uffd).tracker == "uffd-wp"
    assert plan(Mode.COLD, src=uffd).tracker is None


def test_a_container_has_no_uffd_wp_tracker() -> None:
    uffd = Node("a", {**ALL, "mem_track": False, "mem_track_uffd": True})
    with pytest.raises(CriuFeatureMissing, match="dirty-page tracking") as missing:
        decide(Mode.PRECOPY, verdict=None, source=uffd, destination=DST, rss_bytes=RSS,
               container=True)
    assert "runc pre-dumps a container only with soft-dirty" in str(missing.value.hint)


def test_no_postcopy_forbids_the_lazy_final_step() -> None:
    assert not plan(Mode.PRECOPY, options=PlanOptions(no_postcopy=True)).postcopy_allowed


@pytest.mark.parametrize("mode", MODES)
def test_the_destination_needs_room_for_the_images(mode: Mode) -> None:
    images = PlanOptions(stream_cold=False)  # cold writes page files
    need = (0 if mode is Mode.POSTCOPY else RSS) + DISK_MARGIN
    plan(mode, dst=Node("b", ALL, free_disk=need), options=images)
    with pytest.raises(FerrymanError, match="MiB free for images"):
        plan(mode, dst=Node("b", ALL, free_disk=need - 1), options=images)


def test_a_streamed_cold_restore_needs_no_room_for_page_files() -> None:
    p = plan(Mode.COLD, dst=Node("b", ALL, free_disk=DISK_MARGIN))
    assert p.streamed
    assert p.lazy_dump
    assert not p.lazy  # the wire's Plan.lazy stays post-copy's


def test_cold_streams_its_restore_by_default_where_lazy_pages_work() -> None:
    assert plan(Mode.COLD).streamed
    for mode in (Mode.POSTCOPY, Mode.PRECOPY, Mode.HYBRID):
        assert not plan(mode).streamed


def test_cold_keeps_its_page_files_when_asked_or_when_lazy_pages_cannot_work() -> None:
    assert not plan(Mode.COLD, options=PlanOptions(stream_cold=False)).streamed
    no_uffd = {"lazy_pages": False, "lazy_pipes": True, "mem_track": True}
    assert not plan(Mode.COLD, src=Node("a", no_uffd)).streamed
    assert not plan(Mode.COLD, dst=Node("b", {**ALL, "lazy_pipes": False},
                                        free_disk=2 * GIB)).streamed
    # the pre-flight's lazy dry run found something post-copy cannot move
    assert not plan(Mode.COLD, verdict(row("dry_run.lazy", Status.FAIL,
                                           LAZY_MODES))).streamed
    assert not plan(Mode.COLD, verdict(row("memory.lazy", Status.WARN, LAZY_MODES))).streamed
    assert not plan(Mode.COLD, verdict(supported=(Mode.COLD,))).streamed
    # a container restores through runc or Podman
    assert not decide(Mode.COLD, verdict=None, source=SRC, destination=DST, rss_bytes=RSS,
                      container=True).streamed


def test_a_process_tree_whose_pre_flight_was_skipped_still_streams() -> None:
    assert decide(Mode.COLD, verdict=None, source=SRC, destination=DST, rss_bytes=RSS).streamed


def test_a_warning_about_every_mode_does_not_stop_the_stream() -> None:
    """cold accepted it (--force); what concerns cold too says nothing about lazy pages."""
    v = verdict(row("tcp.established", Status.WARN, ALL_MODES))
    assert plan(Mode.COLD, v, options=PlanOptions(force=True)).streamed


def test_only_a_cold_plan_streams() -> None:
    with pytest.raises(ValueError, match="only a cold Plan"):
        Plan(Mode.POSTCOPY, postcopy_allowed=True, streamed=True)


def test_the_verdict_comes_before_the_feature_gates() -> None:
    """A refusal (exit 40, the conversation ended with Abort) wins over a missing feature."""
    v = verdict(row("kernel.userfaultfd", Status.FAIL, LAZY_MODES))
    with pytest.raises(PreflightFailed):
        plan(Mode.POSTCOPY, v, src=Node("a", {}))
