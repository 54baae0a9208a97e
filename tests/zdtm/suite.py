"""Run zdtm static tests under migration: started on node A, moved to node B by hand and by
ferryman, signalled there, their own PASS/FAIL read back.

One ``Lab`` (two namespace nodes, the cluster PKI, B's agent) serves every test in turn.
Pre-copy and hybrid have no by-hand run on this kernel (tests/zdtm/movers.py): their by-hand
verdict is the reference's, the test moved cold by hand (run once per test, shared).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from bench.env import Env

from tests.integration.conftest import Agent, Cluster
from tests.support.netns import Topology
from tests.zdtm.catalog import Entry
from tests.zdtm.movers import REFERENCE, Mover, by_ferryman, by_hand
from tests.zdtm.zdtmtest import ZdtmError, ZdtmRun, kill_tree

TIMEOUT = 60.0  # any one step: a start, a migration, a stop


@dataclass(frozen=True, slots=True)
class Verdict:
    """One test in one mode: None where it passed, else why not. ``by_hand`` is the test moved
    by hand in ``REFERENCE[mode]`` (``mode`` itself where CRIU typed by hand can do it)."""

    entry: Entry
    mode: str
    by_hand: str | None
    ferryman: str | None

    @property
    def hand_mode(self) -> str:
        """The mode of the by-hand reference."""
        return REFERENCE[self.mode]

    @property
    def regression(self) -> bool:
        """Passes by hand (in the reference mode), fails under ferryman."""
        return self.by_hand is None and self.ferryman is not None


class Lab:
    def __init__(self, topology: Topology, pki: Path, base: Path, criu: str,
                 static_dir: Path) -> None:
        hidden = base / "unused"
        hidden.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.static_dir = static_dir
        self.cluster = Cluster(topology, pki, base, hidden)
        self.env = Env(topo=topology, pki=pki, tmp=base, criu=criu, timeout=TIMEOUT,
                       ports=itertools.count(27100))
        self._dest: Agent | None = None
        self._by_hand: dict[tuple[str, str], str | None] = {}

    @property
    def dest(self) -> Agent:
        """B's agent, started at first use and restarted should it have died."""
        if self._dest is None or self._dest.proc.poll() is not None:
            self._dest = self.cluster.start_agent("b")
        return self._dest

    def close(self) -> None:
        for agent in self.cluster.agents:
            agent.kill()
        for node in self.cluster.topology.nodes.values():
            node.stop_all()

    def _once(self, entry: Entry, mode: str, tool: str, mover: Mover) -> str | None:
        run = ZdtmRun(self.static_dir, entry.name,
                      self.base / entry.name / f"{mode}-{tool.replace(' ', '-')}")
        try:
            wl = run.start(self.cluster.topology["a"], timeout=TIMEOUT)
        except ZdtmError as exc:
            return f"start: {exc}"
        moved = None
        try:
            moved = mover(wl, run.run_dir)
            if moved.error is not None or moved.pid is None:
                return moved.error or "no PID on the destination"
            return run.stop(moved.pid, timeout=TIMEOUT)
        finally:
            kill_tree(wl.pid)
            kill_tree(moved.pid if moved is not None else None)

    def _relative(self, reason: str | None) -> str | None:
        """Paths in a reason relative to this lab's directory (the same in every run)."""
        return None if reason is None else reason.replace(f"{self.base}/", "")

    def by_hand(self, entry: Entry, mode: str) -> str | None:
        """The test moved by hand in ``mode``'s reference mode (once per test and mode)."""
        key = (entry.name, REFERENCE[mode])
        if key not in self._by_hand:
            self._by_hand[key] = self._once(entry, key[1], "by hand",
                                            by_hand(self.env, key[1], tcp=entry.tcp))
        return self._by_hand[key]

    def run(self, entry: Entry, mode: str) -> Verdict:
        """The test moved by hand (``REFERENCE[mode]``), then by ferryman in ``mode``."""
        hand = self.by_hand(entry, mode)
        ferry = self._once(entry, mode, "ferryman",
                           by_ferryman(self.cluster, self.dest, mode, tcp=entry.tcp))
        return Verdict(entry, mode, self._relative(hand), self._relative(ferry))
