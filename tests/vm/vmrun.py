"""Drive tests/vm/make-vm.sh and tests/vm/run-vm.sh from pytest.

A guest reports results to the test as lines ``@@ KEY JSON`` in its output; everything else in
the output is for people. The repository is shared read-only into the guests at its own path.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VM_DIR = REPO / "tests" / "vm"
RESULT_PREFIX = "@@ "


class VMError(Exception):
    """A guest run that gave no usable result; the message carries its output and consoles."""


def build_image() -> float:
    """Build or reuse the guest image (tests/vm/make-vm.sh); seconds taken."""
    t0 = time.monotonic()
    proc = subprocess.run([str(VM_DIR / "make-vm.sh")], capture_output=True, text=True,
                          check=False, timeout=1800)
    if proc.returncode != 0:
        raise VMError(f"make-vm.sh failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return time.monotonic() - t0


@dataclass
class Guest:
    name: str
    rc: int
    out: str
    console: Path

    @property
    def results(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for line in self.out.splitlines():
            if line.startswith(RESULT_PREFIX):
                key, _, value = line[len(RESULT_PREFIX):].partition(" ")
                found[key] = json.loads(value)
        return found

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Run:
    rc: int
    stderr: str
    seconds: float
    guests: dict[str, Guest] = field(default_factory=dict)

    def result(self, key: str) -> Any:
        """The value a guest reported under ``key``; VMError (with diagnostics) if none did."""
        for guest in self.guests.values():
            if key in guest.results:
                return guest.results[key]
        raise VMError(f"no guest reported {key!r}\n{self.describe()}")

    def describe(self) -> str:
        parts = [f"run-vm.sh rc={self.rc} after {self.seconds:.0f}s", self.stderr.strip()]
        for g in self.guests.values():
            parts += [f"----- {g.name} rc={g.rc} output:", g.out.strip(),
                      f"----- {g.name} console tail ({g.console}):", g.console_tail()]
        return "\n".join(p for p in parts if p)


def make_pki(d: Path) -> Path:
    """A cluster CA in ``d`` with credentials for vm1 (10.99.0.1) and vm2 (10.99.0.2)."""
    py = [sys.executable, "-m", "ferryman", "pki"]
    subprocess.run([*py, "init", str(d)], check=True, capture_output=True)
    for name, ip in (("vm1", "10.99.0.1"), ("vm2", "10.99.0.2")):
        subprocess.run([*py, "issue", name, "--pki", str(d), "--ip", ip], check=True,
                       capture_output=True)
    return d


def run_vm(cmd: list[str], *, outdir: Path, pair: bool = False, env: dict[str, str] | None = None,
           mem_mib: int = 1024, cpus: int = 2, timeout: int = 600,
           shares: tuple[Path, ...] = (), systemd: bool = False,
           rw_shares: tuple[Path, ...] = ()) -> Run:
    """Boot one guest (or two with ``pair``) and run ``cmd`` in the repository, as root.

    ``env`` is set for ``cmd``; ``timeout`` bounds each guest, boot included. Per-guest
    output, status and console log are kept in ``outdir``. ``shares``: more host directories
    the guests see read-only at the same paths, ``rw_shares`` read-write. ``systemd``:
    systemd is the guests' PID 1 (run-vm.sh -S), not tests/vm/guest/vm-init.
    """
    assignments = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    args = [str(VM_DIR / "run-vm.sh"), "-r", str(REPO), "-C", str(REPO), "-o", str(outdir),
            "-m", str(mem_mib), "-c", str(cpus), "-t", str(timeout)]
    for share in shares:
        args += ["-r", str(share)]
    for share in rw_shares:
        args += ["-s", str(share)]
    if pair:
        args.append("-2")
    if systemd:
        args.append("-S")
    args += ["--", " ".join([*assignments, shlex.join(cmd)])]
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # run-vm.sh stops its guests
        _, stderr = proc.communicate(timeout=30)
    run = Run(rc=proc.returncode, stderr=stderr, seconds=time.monotonic() - t0)
    for name in ("vm1", "vm2") if pair else ("vm",):
        rc_file, out_file = outdir / f"{name}.rc", outdir / f"{name}.out"
        run.guests[name] = Guest(
            name=name,
            rc=int(rc_file.read_text()) if rc_file.exists() else 255,
            out=out_file.read_text(errors="replace") if out_file.exists() else "",
            console=outdir / f"{name}.console.log",
        )
    return run
