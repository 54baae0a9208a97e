"""``ferryman``'s exit without the interpreter's teardown (cli/exit.py), in real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PRELUDE = """
import atexit, sys, threading, time
from pathlib import Path
from ferryman.cli.exit import exit_now
mark = Path(sys.argv[1])
"""


def _run(body: str, mark: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE + body, str(mark)],
                          capture_output=True, text=True, timeout=30, check=False)


def test_exit_handlers_run_and_buffered_output_is_flushed(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    res = _run("atexit.register(lambda: mark.write_text('handlers ran'))\n"
               "sys.stdout.write('unflushed line')\n"
               "exit_now(3)\n", mark)
    assert res.returncode == 3, res.stderr
    assert res.stdout == "unflushed line"
    assert mark.read_text() == "handlers ran"


def test_a_thread_still_working_is_waited_for(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    res = _run("def work():\n"
               "    time.sleep(0.3)\n"
               "    mark.write_text('thread finished')\n"
               "threading.Thread(target=work).start()\n"
               "exit_now(0)\n", mark)
    assert res.returncode == 0, res.stderr
    assert mark.read_text() == "thread finished"


def test_the_command_exits_with_its_error_code(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "ferryman", "migrate", "1", "--to",
                          "127.0.0.1:9", "--pki", str(tmp_path / "none"), "--name", "a"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode not in (0, 1), res.stderr
    assert res.stderr.startswith("ferryman: error:"), res.stderr
