"""What must hold of an agent after any batch of fuzz sequences, once its sessions have ended.

The agent process is alive; it logged no traceback; no file appeared outside its state
directory (the fuzzer's marker tree is as it was made, and no entry carrying the fuzzer's token
is in any watched directory); no migration directory, bundle slot or child process is left;
its open file descriptors are back to their baseline. Sessions end a little after their
connection does, so :meth:`AgentWatch.settle` allows a grace period before it judges.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.peer import open_fds

GRACE_S = 10.0
_BAD_LOG = re.compile(r"Traceback|Unhandled exception|exception was never retrieved|"
                      r"Exception in callback")


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def children(pid: int) -> list[str]:
    """The agent's child processes, as 'PID command'."""
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        for kid in text.split():
            try:
                cmd = Path(f"/proc/{kid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            kids.append(f"{kid} {cmd.decode(errors='replace')[:120]}")
    return kids


@dataclass
class AgentWatch:
    """The invariants of one agent process (``proc``) with state in ``state_dir``."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    marker: Path  # the fuzzer's tree: must stay as made
    token: str  # in every relative name the fuzzer makes up
    watched: tuple[Path, ...]  # directories in which no entry with the token may appear
    owned: tuple[Path, ...] = ()  # directories only the test writes to: no new entries at all
    fds: int = 0
    _listings: dict[Path, set[str]] = field(default_factory=dict)
    _marker_tree: set[str] = field(default_factory=set)
    _log_at: int = 0

    def baseline(self) -> None:
        """Now is how the agent should look whenever it is idle."""
        self.fds = len(open_fds(self.proc.pid))
        self._marker_tree = tree(self.marker)
        self._listings = {d: set(os.listdir(d)) for d in self.owned}
        self._log_at = self.log_path.stat().st_size

    def settle(self, grace: float = GRACE_S) -> list[str]:
        """Problems left once the sessions have had ``grace`` seconds to end ([] if none)."""
        deadline = time.monotonic() + grace
        while True:
            problems = self._problems()
            if not problems or time.monotonic() > deadline or self.proc.poll() is not None:
                break
            time.sleep(0.02)
        return problems + self._new_log_problems()

    def _problems(self) -> list[str]:
        if (rc := self.proc.poll()) is not None:
            return [f"the agent exited with {rc}"]
        problems = list(self._stray_files())
        for sub in ("migrations", "bundles"):
            d = self.state_dir / sub
            if d.is_dir() and (left := sorted(os.listdir(d))):
                problems.append(f"left in {d}: {left[:5]}")
        if kids := children(self.proc.pid):
            problems.append(f"child processes left: {kids[:3]}")
        fds = open_fds(self.proc.pid)
        if len(fds) > self.fds:
            problems.append(f"{len(fds)} fds open, {self.fds} at baseline: {sorted(fds)[-8:]}")
        return problems

    def _stray_files(self) -> Iterable[str]:
        now = tree(self.marker)
        if now != self._marker_tree:
            yield f"the marker tree changed: {sorted(now ^ self._marker_tree)[:5]}"
        for d in self.watched:
            with_token = [n for n in os.listdir(d) if self.token in n and d / n != self.marker]
            if with_token:
                yield f"files named by the fuzzer in {d}: {with_token[:5]}"
        for d, before in self._listings.items():
            if new := set(os.listdir(d)) - before:
                yield f"new files in {d}: {sorted(new)[:5]}"

    def _new_log_problems(self) -> list[str]:
        with self.log_path.open("rb") as fh:
            fh.seek(self._log_at)
            data = fh.read()
        self._log_at += len(data)
        text = data.decode(errors="replace")
        m = _BAD_LOG.search(text)
        if m is None:
            return []
        return [f"the agent's log has a traceback:\n{text[max(0, m.start() - 300):][:4000]}"]
