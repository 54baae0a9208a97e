"""wait_runc's watch on runc's criu, with real processes standing in for runc and its criu.

runc reads its criu's answer until the socket closes; a criu killed mid-restore leaves tasks
holding that socket and runc never returns, so the agent kills a runc whose criu stays dead and
unreaped. A criu that answered and exited is a zombie too, until runc reaps it: on a slow
machine that can take past one poll, and a runc killed then failed a good restore ("no
message"). Here a stand-in runc (python) starts a stand-in criu (a copy of ``true`` named
criu, so its comm is ``criu``) and reaps it late, or never.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from ferryman.targets.runc_checkpoint import wait_runc

pytestmark = pytest.mark.integration

RUNC = """
import subprocess, sys, time
criu = subprocess.Popen([sys.argv[1]])
time.sleep(float(sys.argv[2]))  # criu has exited: a zombie until we reap it
criu.wait()
sys.exit(int(sys.argv[3]))
"""


def _wait(tmp_path: Path, reap_after_s: float, rc: int, unreaped_s: float) -> tuple[int, float]:
    criu = tmp_path / "criu"
    shutil.copy(shutil.which("true") or "/bin/true", criu)

    async def run() -> tuple[int, float]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUNC, str(criu), str(reap_after_s), str(rc))
        t0 = time.monotonic()
        got = await wait_runc(proc, poll_s=0.02, unreaped_s=unreaped_s)
        return got, time.monotonic() - t0

    return asyncio.run(run())


def test_a_criu_reaped_late_is_no_stuck_runc(tmp_path: Path) -> None:
    """runc reaps its exited criu 0.5 s late (many polls): it is left to finish, and its
    own exit status is the answer."""
    assert _wait(tmp_path, 0.5, 0, unreaped_s=2.0)[0] == 0
    assert _wait(tmp_path, 0.5, 3, unreaped_s=2.0)[0] == 3


def test_a_criu_never_reaped_gets_runc_killed(tmp_path: Path) -> None:
    """runc never reaps its dead criu (it waits on a socket for ever): killed once the
    zombie has stayed past the bound, not before."""
    rc, took = _wait(tmp_path, 60, 0, unreaped_s=1.0)
    assert rc == -signal.SIGKILL
    assert 1.0 <= took < 10
