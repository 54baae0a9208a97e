"""The fault matrix (issue 16): each fault at the phases that matter, in every host mode.

A cell starts a real migration between namespace nodes A and B (a 64 MiB self-verifying
workload, its service address moving along), stops the controller or the destination agent
as it enters one phase (testhooks.py), injects one fault there, lets the migration go on, and
checks the invariant (``_violations``). The table is printed at the end of the run and
written to docs/fault-matrix.md (tests/support/matrix.py).

Phases chosen per fault, rather than the full cross product (time box: CI, 2 cores): before
the freeze is covered by the existing tests (nothing frozen); here, while frozen before the
restore (``src:DUMPED``, ``src:TRANSFERRING``, ``dst:READY``, ``dst:RECEIVING``,
``dst:RESTORING``), at the point of no return (``dst:RESTORED``: restored and stopped, the
source still frozen; ``src:COMMITTED``), after it (``dst:COMMITTED``) and, for post-copy,
inside the page tail (``tail``: the destination's lazy-pages daemon is held with SIGSTOP
from RESTORED on, so the tail cannot end before the fault; the controller is paused at
SERVING_PAGES while the fault is injected; the pages go uncompressed at 100 Mbit/s
(``TAIL_ARGS``), or ferryman's page relay would have moved all 64 MiB before RESTORED, the
tail over before it could be held), and, for cold, while the dump's pages stream
(``pages``: nobody paused; the fault comes once B's page server has written 8 MiB of the
pages, the stream not yet over).

Pre-copy and hybrid track the workload's writes with userfaultfd write-protect (the
controller holds the userfaultfds, host/wptrack.py); their cells run exactly two pre-dumps
(``--policy lxd --max-iterations 2``) of a workload that writes 200 pages/s, and add the
iterations: ``src:ITERATING#1`` (before the first pre-dump, which sends everything) and
``src:ITERATING#2`` (set 1 on B, set 2's page server open on B, the workload's pages
write-protected, the second pre-dump about to start). A workload left on A must also be
left with no page write-protected.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ferryman import testhooks
from ferryman.host import uffd, wptrack
from tests.integration.conftest import PY, Agent, Cluster, run_cli
from tests.integration.test_runc import (
    RuncNodes,
    _lines,
    runc_nodes,  # noqa: F401 (the fixture, by name)
)
from tests.support import faults
from tests.support.bundle import Container
from tests.support.matrix import MATRIX
from tests.support.netns import Node
from tests.support.workloads import Workload, alive

SERVICE = "10.77.0.101"
MOVABLE = ("--movable-addresses", "10.77.0.0/24@eth0")
WORKLOAD_MIB = 64
TAIL = "tail"  # post-copy's page tail (see the module's docstring)
TAIL_ARGS = ("--compress", "off", "--max-bandwidth", "100")  # the tail lasts ~5 s
PAGES = "pages"  # cold: while the dump's pages stream into B (see the module's docstring)
MID_STREAM = 8 << 20  # bytes of pages on B before a PAGES fault
FETCH = "fetch"  # a streamed cold restore, while every page goes into the stopped tree
MODES = ("cold", "postcopy", "precopy", "hybrid", "cold relay", "cold streamed")
# ``cold`` keeps CRIU's own TLS page connection (--compress off, whatever the default) and
# the page files (--cold-restore images); ``cold relay`` sends the pages through ferryman's
# page relay (agent/pagerelay.py), in the cells whose fault meets the page stream or what
# follows it. ``cold streamed``: the default for a process tree, its pages fetched straight
# into the tree restored stopped (docs/ARCHITECTURE.md, section 4.2.1).
MODE_ARGS = {"cold": ("--mode", "cold", "--compress", "off", "--cold-restore", "images"),
             "cold relay": ("--mode", "cold", "--compress", "on", "--cold-restore", "images"),
             "cold streamed": ("--mode", "cold", "--compress", "off")}
TRACKED = ("precopy", "hybrid")  # modes whose pre-dumps write-protect the workload
PRECOPY_ARGS = ("--policy", "lxd", "--max-iterations", "2")


@dataclass(frozen=True)
class Cell:
    fault: str
    phase: str  # "src:PHASE" / "dst:PHASE": who is paused there; TAIL; PAGES; "" (no pause)
    mode: str
    expect: str  # A, B, held or lost (see tests/support/matrix.py); "B or lost": either
    breaks: str = ""  # why this cell breaks the invariant (a strict xfail)
    sometimes: bool = False  # ... in some runs only (an xfail that may pass)
    within: float = 0.0  # if set: the controller ends within this many s of the fault


@dataclass
class Scenario:
    """One cell's migration, its fault and what is left afterwards."""

    cluster: Cluster
    cell: Cell
    b: Agent | None = None
    w: Workload | None = None
    proc: subprocess.Popen[str] | None = None
    controller_killed: bool = False
    agent_killed: bool = False
    held_daemon: int | None = None  # the lazy-pages daemon held with SIGSTOP (tail)
    ended_at: float = 0.0  # time.monotonic() once the controller had ended
    left_on_a: list[str] = field(default_factory=list)  # its processes 30 s after that
    flags: dict[str, Path] = field(default_factory=dict)

    @property
    def a_node(self) -> Node:
        return self.cluster.topology["a"]

    @property
    def b_node(self) -> Node:
        return self.cluster.topology["b"]

    def pauses(self) -> dict[str, str]:
        if self.cell.phase == TAIL:
            return {"dst": "RESTORED", "src": "SERVING_PAGES"}
        if self.cell.phase == FETCH:
            return {}
        who, _, phase = self.cell.phase.partition(":")
        return {who: phase} if phase else {}

    def env(self, who: str) -> dict[str, str] | None:
        phase = self.pauses().get(who)
        if phase is None:
            return None
        self.flags[who] = self.cluster.base / f"pause-{who}"
        return {testhooks.ENV: f"{phase}:{self.flags[who]}"}

    def start(self) -> None:
        c, fault = self.cluster, self.cell.fault
        self.b = c.start_agent("b", *MOVABLE, env=self.env("dst"),
                               hide_dir=fault == "restore fails",
                               state_size="160m" if fault == "destination disk full" else None)
        held = None
        if fault == "restore fails":
            held = c.hidden_dir / "data.txt"
            held.write_text("only on node A\n")
        tracked = self.cell.mode in TRACKED
        self.w = c.workload(mib=WORKLOAD_MIB, seed=f"matrix-{self.cell.mode}",
                            hold_file=str(held) if held else None,
                            dirty_rate=200.0 if tracked else 0.0)
        self.a_node.run("ip", "addr", "add", f"{SERVICE}/24", "dev", "eth0")
        argv = [PY, "-m", "ferryman", "migrate", str(self.w.pid), "--to", self.b.endpoint,
                *MODE_ARGS.get(self.cell.mode, ("--mode", self.cell.mode)),
                "--pki", str(c.pki), "--name", "a", "--state-dir",
                str(self.src_state), "--move-address", f"{SERVICE}/24@eth0",
                "--test-skip-preflight", *(PRECOPY_ARGS if tracked else ()),
                *(TAIL_ARGS if self.cell.phase in (TAIL, FETCH) else ())]
        env = self.env("src")
        self.proc = self.a_node.popen(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=None if env is None else {**os.environ, **env})

    @property
    def controller_pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def agent_pid(self) -> int:
        assert self.b is not None
        return self.b.proc.pid

    @property
    def src_state(self) -> Path:
        return self.cluster.base / "state-src"

    def wait_for(self, done: Callable[[], bool], what: str, seconds: float,
                 step: float) -> None:
        """Until ``done()``, checked every ``step`` s: the migration must not end first
        (no outcome: its stderr says why), nor ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        while not done():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"migration ended before {what}: "
                                     f"{self.proc.communicate()[1]}")
            assert time.monotonic() < deadline, f"not {what} within {seconds:.0f} s"
            time.sleep(step)

    def wait_paused(self, who: str) -> None:
        self.wait_for(self.flags[who].exists, f"{who} reached {self.pauses()[who]}", 90, 0.002)

    def release(self, who: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.flags[who].unlink()

    def reach_phase(self) -> None:
        """Run the migration to the cell's phase and leave it paused there."""
        if self.cell.phase == TAIL:
            assert self.b is not None
            self.wait_paused("dst")  # restored, stopped; the daemon has not finished
            self.held_daemon = faults.wait_criu_below(self.agent_pid, "lazy-pages", 5)
            faults.kill(self.held_daemon, signal.SIGSTOP)
            self.release("dst")
            self.wait_paused("src")
        elif self.cell.phase == FETCH:  # restored stopped, its pages coming: held there
            self.wait_for(lambda: "FETCHING" in _outcomes(self),
                          "B restored the tree and fetches its pages", 90, 0.002)
            assert self.b is not None
            self.held_daemon = faults.wait_criu_below(self.agent_pid, "lazy-pages", 5)
            faults.kill(self.held_daemon, signal.SIGSTOP)
        else:
            for who in self.pauses():
                self.wait_paused(who)

    def go_on(self) -> None:
        for who in list(self.flags):
            self.release(who)
        if self.held_daemon is not None:
            faults.kill(self.held_daemon, signal.SIGCONT)

    def dest_workdir(self) -> Path:
        assert self.b is not None
        (d,) = self.b.migration_dirs()
        return d

    def kill_controller(self) -> None:
        assert self.proc is not None
        faults.kill(self.proc.pid)
        self.controller_killed = True

    def kill_agent(self) -> None:
        assert self.b is not None
        self.b.kill()
        self.agent_killed = True

    def restart_agent(self) -> Agent:
        """B's agent started again by the operator, as it was (it cleans up what it can)."""
        return self.cluster.start_agent("b", *MOVABLE)


def _pages_on_b(s: Scenario) -> int:
    assert s.b is not None
    total = 0
    for d in s.b.migration_dirs():
        for p in d.glob("pages-*.img"):
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
    return total


def _wait_mid_stream(s: Scenario) -> None:
    """Until B's page server has written ``MID_STREAM`` bytes of the dump's pages. If all
    of the workload's were there by then, the fault came too late: the cell has no outcome
    and is skipped, saying so."""
    got = 0

    def streamed() -> bool:
        nonlocal got
        got = _pages_on_b(s)
        return got >= MID_STREAM

    s.wait_for(streamed, "its pages streamed (B had MID_STREAM bytes)", 60, 0.0005)
    if got >= WORKLOAD_MIB << 20:
        pytest.skip(f"the fault came too late (no outcome): {got >> 20} MiB of pages on B")


def _corrupt(pattern: str, offset: int) -> Callable[[Scenario], None]:
    def inject(s: Scenario) -> None:
        faults.corrupt(sorted(s.dest_workdir().glob(pattern))[0], offset)
    return inject


def _restore_forked(s: Scenario) -> int:
    """Let the paused agent go on; criu restore's PID once it has forked the tree.

    The restore of the cell's workload takes under a second; on a loaded machine this
    poller may not run before it is over. Then the fault never happened: the cell has no
    outcome and is skipped, saying so (it is neither a pass nor a broken invariant)."""
    s.go_on()
    try:
        pid = faults.wait_criu_below(s.agent_pid, "restore", 30)
    except TimeoutError as exc:
        pytest.skip(f"the fault came too late (no outcome): {str(exc)[:120]}")
    deadline = time.monotonic() + 30
    while not faults.descendants(pid):
        if time.monotonic() > deadline or not Path(f"/proc/{pid}").exists():
            pytest.skip("the fault came too late (no outcome): criu restore forked no task "
                        "while watched")
        time.sleep(0.001)
    return pid


def _kill_restore(s: Scenario) -> None:
    """criu restore, once it has forked the tree it restores (it starts once the paused
    agent goes on)."""
    faults.kill(_restore_forked(s))


def _kill_lazy_pages(s: Scenario) -> None:
    """criu lazy-pages while it serves a restore. At dst:RESTORING, once criu restore has
    forked the tree (a daemon killed before it served anything is started again by the
    agent, and the move then succeeds: B, no fault at all to the workload); in the tail, at
    once."""
    if s.cell.phase == "dst:RESTORING":
        _restore_forked(s)
    faults.kill(faults.wait_criu_below(s.agent_pid, "lazy-pages", 5))


def _kill_restore_agent_held(s: Scenario) -> None:
    """As _kill_restore, with B's agent held (SIGSTOP) until its lazy-pages daemon, which
    sees the restore die, has closed its page-server session in order (PS_IOV_CLOSE): what
    the daemon does whenever it is quicker than the agent's clean-up. The source's lazy dump
    then ends 'successfully' before any commit. (Killed before it has registered the tree's
    memory, the daemon sometimes waits on: after 5 s the agent goes on regardless.)"""
    restore = _restore_forked(s)
    daemon = faults.wait_criu_below(s.agent_pid, "lazy-pages", 30)
    faults.kill(s.agent_pid, signal.SIGSTOP)
    try:
        faults.kill(restore)
        deadline = time.monotonic() + 5
        while faults.cmdline(daemon) and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        faults.kill(s.agent_pid, signal.SIGCONT)


def _kill_pre_dump(s: Scenario) -> None:
    """The source's criu pre-dump (the controller paused before it starts), killed while it
    holds the workload seized (tasks in tracing stop), or, if that window was missed, once
    it has run for 50 ms."""
    s.go_on()
    dump = faults.wait_criu_below(s.controller_pid, "pre-dump", 30)
    assert s.w is not None
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline and _state(s.w.pid) not in "tT":
        time.sleep(0.0005)
    faults.kill(dump)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "X"
    return stat[stat.rindex(")") + 2]


def _restart_while_held(s: Scenario) -> None:
    """The controller dies at RESTORED (the destination keeps its copy); then the agent is
    killed and started again while it holds that copy."""
    s.kill_controller()
    s.go_on()
    deadline = time.monotonic() + 60
    while "ORPHANED" not in _outcomes(s):
        assert time.monotonic() < deadline, "the destination never held the copy"
        time.sleep(0.05)
    s.kill_agent()


def _outcome(b: Agent, migration: Path) -> str:
    """The agent's record of how ``migration`` ended ("" while it has none)."""
    record = b.state_dir / "outcomes" / migration.name
    return record.read_text() if record.is_file() else ""


def _outcomes(s: Scenario) -> str:
    assert s.b is not None
    return "".join(_outcome(s.b, d) for d in s.b.migration_dirs())


FAULTS: dict[str, Callable[[Scenario], None]] = {
    "SIGKILL controller": Scenario.kill_controller,
    "SIGKILL destination agent": Scenario.kill_agent,
    "SIGKILL source criu (dump / page server)": lambda s: faults.kill(
        faults.wait_criu_below(s.controller_pid, "dump", 5)),
    "SIGKILL source criu pre-dump": _kill_pre_dump,
    "SIGKILL destination criu page-server": lambda s: faults.kill(
        faults.wait_criu_below(s.agent_pid, "page-server", 5)),
    "SIGKILL destination criu lazy-pages": _kill_lazy_pages,
    "SIGKILL destination criu restore": _kill_restore,
    "SIGKILL destination criu restore, B's agent held": _kill_restore_agent_held,
    "link cut (both directions)": lambda s: faults.cut_link(s.b_node, s.a_node.ip),
    "link cut (A to B only)": lambda s: faults.cut_link(s.b_node, s.a_node.ip,
                                                        outbound=False),
    "link cut (B to A only)": lambda s: faults.cut_link(s.b_node, s.a_node.ip,
                                                        inbound=False),
    "destination disk full": lambda s: faults.fill_disk(s.agent_pid, s.cluster.base /
                                                        "state-b"),
    "image corrupted on B (core-*.img)": _corrupt("core-*.img", 0),
    "image corrupted on B (pages-*.img)": _corrupt("pages-*.img", 32 << 20),
    "image corrupted on B (pre-1/pages-*.img)": _corrupt("pre-1/pages-*.img", 32 << 20),
    "restore fails": lambda s: None,  # the workload's file is missing on B
    "agent restarted while holding a copy": _restart_while_held,
}

def _cells() -> list[Cell]:
    c, p, r, h, z, st = MODES
    spec: list[tuple[str, str, dict[str, str]]] = [
        ("SIGKILL controller", "src:ITERATING#2", {r: "A", h: "A"}),
        ("SIGKILL controller", "src:DUMPED", {c: "A", p: "A", r: "A", z: "A"}),
        ("SIGKILL controller", "dst:RESTORING", {c: "A", p: "A"}),
        ("SIGKILL controller", "dst:RESTORED", {c: "A", p: "A", r: "A", h: "A"}),
        ("SIGKILL controller", "src:COMMITTED", {c: "A", p: "lost", r: "A", h: "B or lost"}),
        ("SIGKILL controller", TAIL, {p: "lost"}),
        ("SIGKILL destination agent", "src:ITERATING#2", {r: "A"}),
        ("SIGKILL destination agent", "dst:RECEIVING", {c: "A", p: "A", z: "A"}),
        ("SIGKILL destination agent", "dst:RESTORED", {c: "A", p: "A"}),
        ("SIGKILL destination agent", "dst:COMMITTED", {c: "B", p: "lost"}),
        ("SIGKILL destination agent", TAIL, {p: "lost"}),
        ("SIGKILL source criu pre-dump", "src:ITERATING#2", {r: "A"}),
        ("SIGKILL source criu (dump / page server)", "src:DUMPED",
         {c: "A", p: "A", r: "A", z: "A"}),
        ("SIGKILL source criu (dump / page server)", TAIL, {p: "lost"}),
        ("SIGKILL destination criu page-server", "src:ITERATING#2", {r: "A"}),
        ("SIGKILL destination criu page-server", "dst:READY", {c: "A", z: "A"}),
        ("SIGKILL destination criu page-server", PAGES, {c: "A", z: "A"}),
        ("SIGKILL destination criu lazy-pages", "dst:RESTORING", {p: "A"}),
        ("SIGKILL destination criu lazy-pages", TAIL, {p: "lost"}),
        ("SIGKILL destination criu restore", "dst:RESTORING", {c: "A", p: "A"}),
        ("SIGKILL destination criu restore, B's agent held", "dst:RESTORING", {p: "A"}),
        ("link cut (both directions)", "src:ITERATING#2", {r: "A"}),
        ("link cut (both directions)", PAGES, {c: "A", z: "A"}),
        ("link cut (both directions)", "src:TRANSFERRING", {c: "A", p: "A", r: "A", z: "A"}),
        ("link cut (both directions)", "dst:RESTORED", {c: "A", p: "A"}),
        ("link cut (both directions)", "src:COMMITTED", {c: "held", p: "lost"}),
        ("link cut (both directions)", TAIL, {p: "lost", h: "lost or B"}),
        ("link cut (A to B only)", "dst:RESTORED", {c: "held", p: "lost"}),
        ("link cut (A to B only)", TAIL, {p: "lost"}),
        ("link cut (B to A only)", TAIL, {p: "lost"}),
        ("destination disk full", "src:ITERATING#1", {r: "A"}),
        ("destination disk full", "dst:READY", {c: "A", p: "A", z: "A"}),
        ("image corrupted on B (core-*.img)", "dst:RESTORING", {c: "A", p: "A"}),
        ("image corrupted on B (pages-*.img)", "dst:RESTORING", {c: "A", r: "A", z: "A"}),
        ("image corrupted on B (pre-1/pages-*.img)", "dst:RESTORING", {r: "A"}),
        ("restore fails", "", {c: "A", p: "A", r: "A"}),
        ("agent restarted while holding a copy", "dst:RESTORED", {c: "A", p: "A"}),
        # a streamed cold restore: until Restored it rolls back as post-copy does (nothing
        # ran on B); from there on it is cold (B holds the whole tree)
        ("SIGKILL controller", "src:DUMPED", {st: "A"}),
        ("SIGKILL controller", "dst:RESTORING", {st: "A"}),
        ("SIGKILL controller", FETCH, {st: "A"}),
        ("SIGKILL controller", "dst:RESTORED", {st: "A"}),
        ("SIGKILL controller", "src:COMMITTED", {st: "A"}),
        ("SIGKILL destination agent", "dst:RECEIVING", {st: "A"}),
        ("SIGKILL destination agent", FETCH, {st: "A"}),
        ("SIGKILL destination agent", "dst:RESTORED", {st: "A"}),
        ("SIGKILL destination agent", "dst:COMMITTED", {st: "B"}),
        ("SIGKILL source criu (dump / page server)", "src:DUMPED", {st: "A"}),
        ("SIGKILL source criu (dump / page server)", FETCH, {st: "A"}),
        ("SIGKILL destination criu lazy-pages", FETCH, {st: "A"}),
        ("SIGKILL destination criu restore", "dst:RESTORING", {st: "A"}),
        ("link cut (both directions)", "src:TRANSFERRING", {st: "A"}),
        ("link cut (both directions)", FETCH, {st: "A"}),
        ("link cut (both directions)", "dst:RESTORED", {st: "A"}),
        ("link cut (both directions)", "src:COMMITTED", {st: "held"}),
        ("link cut (A to B only)", "dst:RESTORED", {st: "held"}),
        ("image corrupted on B (core-*.img)", "dst:RESTORING", {st: "A"}),
        ("restore fails", "", {st: "A"}),
        ("agent restarted while holding a copy", "dst:RESTORED", {st: "A"}),
    ]
    breaks = {("link cut (both directions)", TAIL, h): HYBRID_SAYS_LOST}
    sometimes = {("link cut (both directions)", TAIL, h)}
    # The roll-back's time bound: a cut link is seen within the page connection's and the
    # control connection's 5 s TCP_USER_TIMEOUT (criu/pacing.py, agent/channel.py).
    within = {("link cut (both directions)", "src:ITERATING#2", r): CUT_ROLLBACK_S,
              ("link cut (both directions)", "src:TRANSFERRING", c): CUT_ROLLBACK_S,
              ("link cut (both directions)", "src:TRANSFERRING", p): CUT_ROLLBACK_S,
              ("link cut (both directions)", "src:TRANSFERRING", r): CUT_ROLLBACK_S,
              ("link cut (both directions)", "src:TRANSFERRING", z): CUT_ROLLBACK_S,
              ("link cut (both directions)", PAGES, c): CUT_ROLLBACK_S,
              ("link cut (both directions)", "src:TRANSFERRING", st): CUT_ROLLBACK_S,
              ("link cut (both directions)", FETCH, st): CUT_ROLLBACK_S,
              ("link cut (both directions)", PAGES, z): CUT_ROLLBACK_S}
    return [Cell(fault, phase, mode, expect, breaks.get((fault, phase, mode), ""),
                 (fault, phase, mode) in sometimes, within.get((fault, phase, mode), 0.0))
            for fault, phase, by_mode in spec for mode, expect in by_mode.items()]


CUT_ROLLBACK_S = 15.0
HYBRID_SAYS_LOST = (
    "hybrid's tail is small (54 pages in one run): B's lazy-pages daemon, continued after "
    "the cut, may find every page already in its socket and the workload runs on B intact, "
    "while the controller, which cannot tell (the cut also keeps the dump's in-order end "
    "from reaching it), reports it LOST (exit 9): 1 run of 3 after the source began "
    "waiting for that end")


CELLS = _cells()
MATRIX.total = len(CELLS)
MATRIX.notes = [
    "Phases per fault, not the full cross product (time box): while frozen before the "
    "restore (src:DUMPED, src:TRANSFERRING, dst:READY, dst:RECEIVING, dst:RESTORING), at the "
    "point of no return (dst:RESTORED: restored and stopped, the source still frozen; "
    "src:COMMITTED: cold, the source tasks stopped, the Commit not yet sent; post-copy, just "
    "sent), after it (dst:COMMITTED) and post-copy's page tail (tail: B's lazy-pages daemon "
    "held with SIGSTOP from RESTORED on, the controller paused at SERVING_PAGES). Faults "
    "before the freeze are covered elsewhere (nothing is frozen: test_cold, test_check).",
    "Pre-copy and hybrid (the uffd-wp tracker: the controller holds one userfaultfd per "
    "process): exactly two pre-dumps (--policy lxd --max-iterations 2) of a workload writing "
    "200 pages/s. src:ITERATING#1 is before the first pre-dump (it sends all 64 MiB into B's "
    "page server, opened at READY); src:ITERATING#2 before the second (set 1 on B, set 2's "
    "page server open on B, the workload's pages write-protected: the cell checks they are). "
    "Nothing is frozen between pre-dumps; every such fault rolls back with exit 8, or the "
    "controller's death alone; the workload on A must then have no page write-protected "
    "(the kernel drops the protection with the controller's userfaultfds). The final-dump "
    "cells are those where pre-copy differs from cold: the final dump has a parent image "
    "chain on both nodes and runs with the tracker armed.",
    "cold relay: cold with --compress on, the pages LZ4-compressed through ferryman's page "
    "relay (agent/pagerelay.py: criu's page stream in a socket pair, ferryman's own TLS "
    "between the nodes, `criu page-server --ps-socket` on B); the cold column pins "
    "--compress off (CRIU's own TLS page connection). Only the cells whose fault meets the "
    "page stream or follows it closely are run with the relay; the other modes never use it "
    "(post-copy's and pre-copy's pages stay on CRIU's path). Before the relay held them: B's "
    "page server killed at dst:READY left the controller hung in FREEZING until the cell "
    "killed it after 150 s (2 runs of 4; a criu helper child, orphaned by the kill during "
    "criu's start-up, held the page server's socket open, and A's relay took B's orderly "
    "TLS close for nothing); a link cut at src:TRANSFERRING rolled back after 35.5 s (no "
    "TCP_USER_TIMEOUT on the relay's socket, asyncio's 30 s TLS shutdown); at pages, both "
    "faults hung the controller 150 s. The relay's sockets now bound their stalls as CRIU's "
    "page sockets (5 s TCP_USER_TIMEOUT, keepalive every second), B's relay ends with its "
    "page server's process, A's with B's close, and B's socket page server counts as "
    "started only once criu says it is ready (--status-fd).",
    "cold streamed: the default cold restore of a process tree (--cold-restore streamed): "
    "CRIU dumps lazily, B restores the tree stopped and its lazy-pages daemon fetches every "
    "page into it before B says Restored (no page files); the cold and cold relay columns "
    "pin --cold-restore images. fetch: B restored the tree and wrote its FETCHING record; "
    "its lazy-pages daemon is then held with SIGSTOP (the pages at 100 Mbit/s, uncompressed, "
    "so that the fetch is still going) while the fault is injected, nobody else paused. "
    "Until Restored a fault rolls back (nothing ran on B; a restarted B kills the tree its "
    "FETCHING record names), after it B holds the whole tree, as cold's.",
    "pages (cold): nobody is paused; the fault comes once B's page server has written 8 MiB "
    "of the dump's pages (of 64 MiB; a run where all had arrived first is skipped as 'too "
    "late'). The workload is frozen: the dump must fail and the tree be resumed.",
    "SIGKILL source criu pre-dump (src:ITERATING#2): killed while it holds the workload "
    "seized (tracing stop; 50 ms at most is waited for that window): the kernel detaches "
    "the tree, which runs on intact and unprotected.",
    "link cut (both directions) at src:ITERATING#2, pre-copy: each pre-dump connects to B's "
    "page server anew, before it seizes the tree. CRIU's connect had no timeout of its own: "
    "the kernel's SYN retries bounded it (the roll-back came after 127-138 s at the default "
    "6, the workload running on meanwhile). Our CRIU build bounds every stall of a page "
    "connection it opens at FERRYMAN_PAGE_TIMEOUT_MS (5 s: TCP_USER_TIMEOUT, which ends the "
    "SYN retries too, and keepalive probes every second; criu/pacing.py), and logs a failed "
    "connect as an error, which the one-line message now names ('criu pre-dump failed: "
    "Can't connect to server 10.77.0.2:PORT: Connection timed out'). The cells with a time "
    "show when the controller had ended, from the fault (bound: 15 s).",
    "Hybrid, controller killed at src:COMMITTED (the Commit just sent): B resumes and its "
    "lazy-pages daemon fetches the pages dirtied since the last pre-dump (about 1,200) from "
    "the source's lazy dump; when it has them all before the controller's death takes that "
    "dump down, the workload runs on B intact (B), otherwise it is lost as in post-copy "
    "(both seen, hence 'B or lost').",
    "A + orphan held on B: the source copy runs on; B keeps its restored copy stopped and "
    "`ferryman orphans` lists it, for the operator to kill. held: the source had sent the "
    "Commit and destroyed its copy, B never got it: B keeps the only copy stopped; the "
    "controller exits 5 naming `ferryman orphans`.",
    "Post-copy, B's agent killed while it holds a restored copy (dst:RESTORED, agent "
    "restarted): the copy is listed and stopped as it should be, but it can never run (its "
    "pages were on the source, served to the lazy-pages daemon that died with the agent): "
    "the operator must kill it, `orphans resume` would run it without its memory.",
    "link cut (A to B only) at dst:RESTORED: in 1 of 5 runs the controller gave up only at "
    "the commit timeout (120 s; ~6 s in the others), although the control connection sets "
    "TCP_USER_TIMEOUT to 5 s: not diagnosed. A connection the kernel timed out is logged as "
    "'did not answer within 120 s' (or 3600 s in the tail), the wait it ended, not the "
    "seconds it took.",
    "SIGKILL destination criu restore, post-copy: B's lazy-pages daemon, seeing its "
    "restore die, closes its page-server session in order; the source's lazy dump then "
    "ended 'successfully' and CRIU killed the source tree before any commit (lost, about 1 "
    "run in 3). Lazy dumps now leave the tree stopped and the source continues it on the "
    "roll-back (criu/client.py); the cell with B's agent held makes the in-order close "
    "happen in most runs.",
    "image corrupted on B: CRIU's page server writes the pages it receives unchecked and "
    "the restore reads them unchecked, so B seals every image file as it arrives (those "
    "of the control channel with the SHA-256 checked on arrival; those a page server "
    "writes hashed while it writes them, agent/imageseal.py) and checks them all again "
    "at the restore: the page files while CRIU restores the tree stopped, which is then "
    "killed. Before the seal, a page file damaged between arrival and restore was restored "
    "as it was (the workload ran on B with 2 bad pages). pre-1/pages-*.img: the first "
    "pre-dump's pages, which the final restore reads through the parent chain.",
]


def _param(cell: Cell) -> object:
    marks = [pytest.mark.xfail(strict=not cell.sometimes, reason=cell.breaks)
             ] if cell.breaks else []
    name = f"{cell.mode} {cell.fault} {cell.phase or 'restore'}"
    return pytest.param(cell, id=re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_"), marks=marks)


@dataclass
class Copies:
    running: list[int]
    stopped: list[int]


def _copies(w: Workload, listed: list[int]) -> Copies:
    """Every copy of the workload on any node: CRIU restores its command line as it was,
    and those ``listed`` as orphans (a post-copy copy without its pages cannot show it)."""
    mark = str(w.status_path)
    running, stopped = [], []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        argv = faults.cmdline(int(d.name))
        if int(d.name) not in listed and (mark not in argv or Path(argv[0]).name in (
                "unshare", "setsid")):
            continue
        with contextlib.suppress(OSError):
            stat = (d / "stat").read_text()
            state = stat[stat.rindex(")") + 2]
            if state in "tT":
                stopped.append(int(d.name))
            elif state not in "ZX":
                running.append(int(d.name))
    return Copies(running, stopped)


def _settle(s: Scenario) -> tuple[int | None, str]:
    """Let the migration end (or the killed parts go); the controller's exit and stderr."""
    assert s.proc is not None
    try:
        _, err = s.proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        _, err = s.proc.communicate()
        err += "\n(the controller hung: killed after 150 s)"
    s.ended_at = time.monotonic()
    # the controller's guard (agent/lockguard.py) is done, and whatever the controller ran
    s.left_on_a = _wait_gone(str(s.src_state))
    faults.mend_link(s.b_node)
    if s.agent_killed:  # the operator starts it again (it cleans up what it can)
        s.b = s.restart_agent()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (faults.criu_using(s.cluster.base) or any(
            _concluding(s.b, d) for d in s.b.migration_dirs() if s.b) or (
            s.b is not None and _sessions_open(s.b))):
        time.sleep(0.1)
    return (None if s.controller_killed else s.proc.returncode), err


def _sessions_open(b: Agent) -> bool:
    """B's current agent still serves a session: it may conclude on its own, later than the
    source (a cut link: each side's own timeout), and must be looked at once it has."""
    lines = b.log().splitlines()
    start = max((i for i, ln in enumerate(lines) if " listening on " in ln), default=0)
    lines = lines[start:]
    opened = sum(1 for ln in lines if re.search(r" session from \S+ \(\S+\)$", ln))
    return opened > sum(1 for ln in lines if re.search(r" session with \S+ \(\S+\) over$", ln))


def _concluding(b: Agent, migration: Path) -> bool:
    """B has not concluded ``migration`` yet: no record, or one that still holds a copy
    already gone (B found the source lost on its own, killed the copy and is cleaning up;
    the source may have ended first)."""
    words = _outcome(b, migration).split()
    if not words:
        return True
    return words[0] == "ORPHANED" and len(words) > 1 and words[1].isdigit() and \
        not alive(int(words[1]))


def _wait_gone(mark: str, timeout: float = 30.0) -> list[str]:
    """Wait until no process names ``mark`` in its command line; those still running after
    ``timeout`` (empty if none)."""
    deadline = time.monotonic() + timeout
    while left := [" ".join(a)[:120] for d in Path("/proc").iterdir() if d.name.isdigit()
                   and mark in " ".join(a := faults.cmdline(int(d.name)))]:
        if time.monotonic() > deadline:
            return left
        time.sleep(0.05)
    return []


def _listed(b: Agent) -> list[int]:
    out = run_cli("orphans", "--state-dir", str(b.state_dir))
    assert out.returncode == 0, out.stderr
    return [int(ln.split()[2]) for ln in out.stdout.splitlines() if " PID " in ln]  # any state


def _images_left(root: Path, allowed: Callable[[Path], bool]) -> list[str]:
    migrations = root / "migrations"
    left = []
    for d in sorted(migrations.iterdir()) if migrations.is_dir() else []:
        imgs = [p for p in d.rglob("*.img") if p.name != "stats-dump.img"]
        if imgs and not allowed(d):
            left.append(f"{len(imgs)} image files in {d}")
    return left


def _protected(pid: int) -> int:
    """Present pages of ``pid`` that are write-protected (not 'written' to PAGEMAP_SCAN): a
    page no userfaultfd protects always reads as written."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        def count(mask: int) -> int:
            return uffd.count_pages(uffd.scan(fd, 0, wptrack.TASK_END, category_mask=mask,
                                              return_mask=mask))
        return count(uffd.PAGE_IS_PRESENT) - count(uffd.PAGE_IS_PRESENT | uffd.PAGE_IS_WRITTEN)
    finally:
        os.close(fd)


def _has_address(node: Node) -> bool:
    return f"inet {SERVICE}/" in node.run("ip", "-4", "addr", "show", "dev", "eth0").stdout


def _classify(s: Scenario, copies: Copies, listed: list[int]) -> str:
    assert s.w is not None
    if copies.running == [s.w.pid]:
        return "A"
    if len(copies.running) == 1:
        return "B"
    if not copies.running and copies.stopped == listed and len(listed) == 1:
        return "held"
    if not copies.running and not copies.stopped:
        return "lost"
    return f"{len(copies.running)} running, {len(copies.stopped)} stopped"


def _exit_violations(outcome: str, rc: int, err: str) -> list[str]:
    """The exit code and the one error line say what happened: 8 rolled back, 9 lost, 0
    committed; a destination that may hold the workload without having confirmed it (B or
    held, nonzero) is named with 'ferryman orphans'."""
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("ferryman: error:")]
    if rc == 0:
        return [] if outcome == "B" and not errors else [f"exit 0 with the workload {outcome}"]
    bad = []
    if len(errors) != 1 or lines[-1] != errors[0] or len(errors[0]) < 30:
        bad.append(f"not one error line: {lines[-3:]}")
    want = {"A": 8, "lost": 9}.get(outcome)
    if want is not None and rc != want:
        bad.append(f"exit {rc} (want {want})")
    if outcome in ("B", "held") and not any("ferryman orphans" in e for e in errors):
        bad.append(f"exit {rc} does not say the destination has it: {errors}")
    return bad


def _violations(s: Scenario, rc: int | None, err: str, outcome: str, copies: Copies,
                listed: list[int]) -> list[str]:
    assert s.w is not None
    assert s.b is not None
    bad: list[str] = []
    if len(copies.running) > 1:
        bad.append(f"runs {len(copies.running)} times")
    for pid in copies.running:
        pages = s.w.status(pid)["bad_pages"]
        if pages != 0:
            bad.append(f"{pages} bad pages")
    if s.cell.mode in TRACKED and s.w.pid in copies.running and (n := _protected(s.w.pid)):
        bad.append(f"{n} pages of the workload on A still write-protected")
    if outcome == "lost" and (s.cell.mode not in ("postcopy", "hybrid") or rc not in (None, 9)):
        bad.append("lost outside post-copy's loss window")
    if unlisted := sorted(set(copies.stopped) - set(listed)):
        bad.append(f"stopped copies {unlisted} that 'ferryman orphans' does not list")
    if ghosts := sorted(set(listed) - set(copies.stopped)):
        bad.append(f"'ferryman orphans' lists {ghosts}, which are not held")
    if rc is not None:
        bad += _exit_violations(outcome, rc, err)
    if left := faults.criu_using(s.cluster.base):
        bad.append(f"criu left running: {left}")
    if s.left_on_a:
        bad.append(f"30 s after the controller, A still runs {s.left_on_a}")
    bad += _images_left(s.src_state, lambda d: False)
    b = s.b
    bad += _images_left(b.state_dir, lambda d: _outcome(b, d).startswith("ORPHANED"))
    for node in (s.a_node, s.b_node):
        if tables := faults.lock_tables(node):
            bad.append(f"CRIU lock tables left on {node.name[-1]}: {tables}")
    on_a, on_b = _has_address(s.a_node), _has_address(s.b_node)
    if on_a and on_b:
        bad.append("service address on both nodes")
    if (outcome == "A" and not on_a) or (outcome == "B" and not on_b):
        bad.append(f"service address not with the workload (A: {on_a}, B: {on_b})")
    return bad


def _clean_up(s: Scenario) -> None:
    s.go_on()
    faults.mend_link(s.b_node)
    if s.proc is not None and s.proc.poll() is None:
        s.proc.kill()
        s.proc.communicate()
    if s.w is not None:
        copies = _copies(s.w, _listed(s.b) if s.b is not None else [])
        for pid in copies.running + copies.stopped:
            faults.kill(pid)
        s.w.kill()
    for pid in faults.criu_using(s.cluster.base):
        faults.kill(pid)
    for node in (s.a_node, s.b_node):
        node.run("ip", "addr", "del", f"{SERVICE}/24", "dev", "eth0", check=False)
        for table in faults.lock_tables(node):
            node.run("nft", "delete", "table", "inet", table, check=False)


def _record_error(cell: Cell, exc: Exception) -> None:
    """A cell that failed before it had an outcome is in the table all the same."""
    phase = cell.phase or "RESTORING (criu fails)"
    if cell.mode not in MATRIX.cells.get((cell.fault, phase), {}):
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        MATRIX.record(cell.fault, phase, cell.mode, f"**BREAKS** no outcome: {first}")


def _verdict(cell: Cell, outcome: str, bad: list[str], rc: int | None, err: str,
             listed: list[int], took: float) -> None:
    """The cell's line in the matrix (its outcome, exit code, and what broke), asserted."""
    if outcome not in cell.expect.split(" or "):
        bad.append(f"expected {cell.expect}")
    if cell.within and took > cell.within:
        bad.append(f"ended {took:.0f} s after the fault (bound: {cell.within:.0f} s)")
    code = "killed" if rc is None else f"exit {rc}"
    if cell.within:
        code += f" after {took:.1f} s"
    extra = " + orphan held on B" if outcome == "A" and listed else ""
    text = f"{outcome}{extra} ({code})"
    MATRIX.record(cell.fault, cell.phase or "RESTORING (criu fails)", cell.mode,
                  f"**BREAKS** {text}: {'; '.join(bad)}" if bad else text)
    assert not bad, f"{text}: {bad}\n{err}"


@pytest.mark.parametrize("cell", [_param(c) for c in CELLS])
def test_fault_matrix_cell(cluster: Cluster, cell: Cell) -> None:
    s = Scenario(cluster, cell)
    try:
        s.start()
        s.reach_phase()
        if cell.phase == "src:ITERATING#2":  # the check of _violations can see protection
            assert s.w is not None
            assert _protected(s.w.pid) > 0, "not write-protected after the first pre-dump"
        if cell.phase == PAGES:
            _wait_mid_stream(s)
        FAULTS[cell.fault](s)
        s.go_on()
        faulted = time.monotonic()
        rc, err = _settle(s)
        assert s.w is not None
        assert s.b is not None
        listed = _listed(s.b)
        copies = _copies(s.w, listed)
        outcome = _classify(s, copies, listed)
        bad = _violations(s, rc, err, outcome, copies, listed)
        _verdict(cell, outcome, bad, rc, err, listed, s.ended_at - faulted)
    except Exception as exc:
        _record_error(cell, exc)
        raise
    finally:
        _clean_up(s)


# runc containers (the "runc containers" row): cold and post-copy of a counter
# container (test_runc.py's bundle and nodes), with the main faults. The counter's shell
# holds its count in memory and appends each value to /data/log in its rootfs: a copy that
# runs with the lines 1..n in order, growing, lost nothing of its memory.

RUNC_MODES = ("runc cold", "runc postcopy")
CID = f"counter-{os.getpid()}"  # its cgroup is /CID: two test runs at once never share it
RUNC_TRANSFERRING_FIXED = (
    "fixed: a fault while the controller is in TRANSFERRING with a runc container (its "
    "images sent, then the final rsync of the frozen container's files) hung the "
    "controller until the cell killed it after 150 s, the container frozen on A, for two "
    "reasons. (1) That rsync runs through fs/tunnel.py, whose TLS socket had no dead-link"
    " bound: after a cut it waited in epoll for ever for the frames rsync --server had "
    "sent into the cut (ss on A: ESTABLISHED, no timer, lastrcv 77 s; B: FIN-WAIT-1), "
    "rsync waited on it and the controller on rsync (600 s). The tunnel and the sync "
    "listener now have the control connection's bound (host/deadlink.py: keepalive, "
    "TCP_USER_TIMEOUT 5 s), and an end without TLS's close is an error that names the "
    "dead link. (2) runc post-copy: when the failure reached CRIU's post-dump as 'no', "
    "CRIU's lazy dump started its page server anyway (cr_dump_finish) and waited for a "
    "lazy-pages daemon that never came (criu and the hold script's thaw helper left on A;"
    " B's agent killed: 2 of 2 baseline runs); a process tree's lazy dump gets 'no' at "
    "status-ready over RPC, and the hold script now fails status-ready without a 'go', so"
    " CRIU resumes the container and runc checkpoint fails")
RUNC_SAYS_LOST = (
    "held since the source waits for the lazy dump's end after a failure past the commit "
    "(source_driver.py: AwaitDumpEnd, 7 s at most): B's agent killed after the commit, "
    "the container's memory (a shell, a few pages) had all reached B, which runs it on "
    "intact; the controller reported it LOST, 'restart it from its own state' (exit 9). "
    "Now the in-order end tells it every page went, and the error sends the operator to "
    "B first ('ferryman orphans'); exit 9 still, as the source cannot confirm it runs "
    "there (4 runs of 4; before, 1 of 3)")


@dataclass
class RuncScenario(Scenario):
    nodes: RuncNodes | None = None
    box: Container | None = None  # on A
    on_b: Container | None = None

    @property
    def runc(self) -> RuncNodes:
        assert self.nodes is not None
        return self.nodes

    def agent_args(self) -> list[str]:
        return ["--runc-root", str(self.runc.root_b)]

    def start(self) -> None:
        c, extra = self.cluster, self.agent_args()
        if self.cell.fault == "restore fails":  # B's runc fails its restore
            fake = c.base / "failing-runc"
            fake.write_text('#!/bin/sh\ncase " $* " in *" restore "*) exit 1 ;; esac\n'
                            'exec runc "$@"\n')
            fake.chmod(0o755)
            extra += ["--runc", str(fake)]
        self.b = c.start_agent("b", *extra, hide_dir=True, cgroup=self.runc.jail,
                               env=self.env("dst"))
        self.box, _ = self.runc.counter(CID, 25)
        self.on_b = self.runc.on_b(CID)
        argv = [PY, "-m", "ferryman", "migrate", "--runc", CID, "--runc-root",
                str(self.runc.root_a), "--to", self.b.endpoint, "--mode",
                self.cell.mode.split()[1], "--pki", str(c.pki), "--name", "a", "--state-dir",
                str(self.src_state), "--test-skip-preflight"]
        env = self.env("src")
        self.proc = self.a_node.popen(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=None if env is None else {**os.environ, **env})

    def restart_agent(self) -> Agent:
        return self.cluster.start_agent("b", *self.agent_args(), hide_dir=True,
                                        cgroup=self.runc.jail)

    def copies(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[str]]:
        """The container's running and stopped copies, as (node, init PID); and runc
        records left without a process."""
        running, stopped, dead = [], [], []
        for node, box in (("A", self.box), ("B", self.on_b)):
            assert box is not None
            st = box.state()
            if st is None:
                continue
            pid = int(st["pid"])  # type: ignore[call-overload]
            state = _state(pid) if pid > 0 else "X"
            if state in "tT":
                stopped.append((node, pid))
            elif state not in "ZX":
                running.append((node, pid))
            else:
                dead.append(f"{node} ({st.get('status')})")
        return running, stopped, dead

    def log_of(self, node: str) -> Path:
        box = self.box if node == "A" else self.on_b
        assert box is not None
        return box.bundle / "rootfs" / "data" / "log"


def _counter_violations(s: RuncScenario, node: str) -> list[str]:
    """The copy on ``node`` counts on from where it was: 1..n in order, and growing."""
    before = _lines(s.log_of(node))
    time.sleep(0.3)
    after = _lines(s.log_of(node))
    bad = []
    if after[:len(before)] != before or after != [str(i) for i in range(1, len(after) + 1)]:
        bad.append(f"the counter on {node} lost or doubled values")
    if len(after) <= len(before):
        bad.append(f"the counter on {node} does not count")
    return bad


def _runc_violations(s: RuncScenario, rc: int | None, err: str, outcome: str,
                     listed: list[int]) -> list[str]:
    running, stopped, dead = s.copies()
    bad: list[str] = []
    if len(running) > 1:
        bad.append(f"runs {len(running)} times")
    for node, _ in running:
        bad += _counter_violations(s, node)
    if dead:
        bad.append(f"runc records without a process left on {', '.join(dead)}")
    held = [pid for node, pid in stopped if node == "B"]
    if [n for n, _ in stopped if n == "A"]:
        bad.append("a stopped copy left on A")
    if sorted(held) != sorted(listed):
        bad.append(f"stopped on B {held}, 'ferryman orphans' lists {listed}")
    if outcome == "lost" and (s.cell.mode != "runc postcopy" or rc not in (None, 9)):
        bad.append("lost outside post-copy's loss window")
    if rc is not None:
        bad += _exit_violations(outcome, rc, err)
    if left := faults.criu_using(s.cluster.base):
        bad.append(f"criu left running: {left}")
    if s.left_on_a:
        bad.append(f"30 s after the controller, A still runs {s.left_on_a}")
    bad += _images_left(s.src_state, lambda d: False)
    b = s.b
    assert b is not None
    bad += _images_left(b.state_dir, lambda d: _outcome(b, d).startswith("ORPHANED"))
    for node in (s.a_node, s.b_node):
        if tables := faults.lock_tables(node):
            bad.append(f"CRIU lock tables left on {node.name[-1]}: {tables}")
    return bad


def _runc_classify(s: RuncScenario, listed: list[int]) -> str:
    running, stopped, _ = s.copies()
    if [n for n, _ in running] == ["A"]:
        return "A"
    if [n for n, _ in running] == ["B"]:
        return "B"
    if not running and [pid for _, pid in stopped] == listed and len(listed) == 1:
        return "held"
    if not running and not stopped:
        return "lost"
    return f"{len(running)} running, {len(stopped)} stopped"


def _runc_cells() -> list[Cell]:
    c, p = RUNC_MODES
    spec: list[tuple[str, str, dict[str, str]]] = [
        ("SIGKILL controller", "dst:RESTORED", {c: "A", p: "A"}),
        ("SIGKILL controller", "src:COMMITTED", {c: "A", p: "B or lost"}),
        ("SIGKILL destination agent", "src:TRANSFERRING", {c: "A", p: "A"}),
        ("SIGKILL destination agent", "dst:RESTORED", {c: "A", p: "A"}),
        ("SIGKILL destination agent", "dst:COMMITTED", {c: "B", p: "B or lost"}),
        ("SIGKILL destination criu restore", "dst:RESTORING", {c: "A", p: "A"}),
        ("SIGKILL destination criu restore, B's agent held", "dst:RESTORING", {p: "A"}),
        ("link cut (both directions)", "src:TRANSFERRING", {c: "A", p: "A"}),
        ("link cut (both directions)", "dst:RESTORED", {c: "A", p: "A"}),
        ("restore fails", "", {c: "A", p: "A"}),
    ]
    breaks: dict[tuple[str, str, str], str] = {}
    sometimes: set[tuple[str, str, str]] = set()
    within = {("link cut (both directions)", "src:TRANSFERRING", m): CUT_ROLLBACK_S
              for m in RUNC_MODES}
    return [Cell(fault, phase, mode, expect, breaks.get((fault, phase, mode), ""),
                 (fault, phase, mode) in sometimes, within.get((fault, phase, mode), 0.0))
            for fault, phase, by_mode in spec for mode, expect in by_mode.items()]


RUNC_CELLS = _runc_cells()
MATRIX.total += len(RUNC_CELLS)
MATRIX.notes += [
    "runc cold / runc postcopy: a runc container (busybox shell counting in memory and "
    "appending each value to a file in its rootfs; test_runc.py's bundle, B with a runc "
    "root and cgroups of its own). The copy that runs must count on with every value 1..n "
    "in order (its memory intact) and grow; no runc record without a process may be left "
    "on either node. SIGKILL destination agent is injected at src:TRANSFERRING (frozen, "
    "the images being sent): a runc migration's dst:RECEIVING comes before the freeze "
    "(the rootfs presync), where the controller fails with exit 5 ('lost the connection') "
    "and nothing was frozen.",
    "SIGKILL destination criu restore, runc: runc waited for ever for its criu's answer "
    "(the tasks the killed criu had forked hold the socket's other end; the controller "
    "hung, B kept criu and the images); B's agent now kills runc once its criu has stayed an "
    "unreaped zombie for 2 s (targets/runc_checkpoint.py:wait_runc) and the clean-up kills "
    "what the criu left.",
    f"runc, B's agent killed or the link cut at src:TRANSFERRING: {RUNC_TRANSFERRING_FIXED}.",
    "SIGKILL destination criu restore (cold, runc post-copy): in some runs under load the "
    "fault comes too late (the restore of 64 MiB takes under a second): 'no criu restore "
    "below PID' or 'criu restore forked no task' is the cell's own timing, no outcome.",
    "runc postcopy: runc checkpoint destroys the container whenever CRIU reports success, "
    "and a lazy dump 'succeeds' whenever B's lazy-pages daemon closes the session in order: "
    "when every page went before the commit (a small container: at once), or when the "
    "restore it served died. A's container was then gone before any commit (B's agent "
    "killed at dst:RESTORED: 3 runs of 4; the controller killed there; criu restore killed "
    "with B's agent held). A lazy checkpoint now tells runc --leave-running: CRIU lets the "
    "tasks go into the cgroup ferryman froze, which CRIU puts back frozen; the source thaws "
    "it on a roll-back and runs 'runc delete' after the commit or a loss; the controller's "
    "guard, told at the freeze, thaws it (or, after the commit, kills it and deletes the "
    "record) should the controller die (targets/runc.py:checkpoint_argv, "
    "host/sourcecopy.py). Not with live TCP connections (--tcp-established): CRIU would "
    "lift their lock at once (docs/ARCHITECTURE.md section 10).",
    f"runc postcopy, B's agent killed at dst:COMMITTED: {RUNC_SAYS_LOST}.",
    "runc postcopy, controller killed at src:COMMITTED (the Commit just sent): B resumes "
    "the container and its lazy-pages daemon fetches the few pages a shell has from the "
    "source's lazy dump; when it has them all before the controller's death takes that dump "
    "down, the container runs on B intact (B), otherwise it is lost (both seen: B in 1 full "
    "run of 2026-12-05, on a loaded machine; hence 'B or lost', as for hybrid).",
    f"hybrid, link cut (both directions) in the tail: {HYBRID_SAYS_LOST}.",
]


@pytest.mark.parametrize("cell", [_param(c) for c in RUNC_CELLS])
def test_fault_matrix_runc_cell(runc_nodes: RuncNodes, cell: Cell) -> None:  # noqa: F811
    s = RuncScenario(runc_nodes.cluster, cell, nodes=runc_nodes)
    try:
        s.start()
        s.reach_phase()
        FAULTS[cell.fault](s)
        s.go_on()
        faulted = time.monotonic()
        rc, err = _settle(s)
        assert s.b is not None
        listed = _listed(s.b)
        outcome = _runc_classify(s, listed)
        bad = _runc_violations(s, rc, err, outcome, listed)
        _verdict(cell, outcome, bad, rc, err, listed, s.ended_at - faulted)
    except Exception as exc:
        _record_error(cell, exc)
        raise
    finally:
        s.go_on()
        faults.mend_link(s.b_node)
        if s.proc is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()
        for pid in faults.criu_using(s.cluster.base):
            faults.kill(pid)
