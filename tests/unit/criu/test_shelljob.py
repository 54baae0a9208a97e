"""Shell jobs: trees whose session leader stays behind (criu/shelljob.py)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from pycriu import images

from ferryman.criu.shelljob import dumped_as_shell_job, root_is_shell_job, shell_job


def test_the_images_say_a_root_that_led_no_session_was_a_shell_job() -> None:
    assert root_is_shell_job({"pid": 1, "ppid": 0, "pgid": 1, "sid": 0})  # sid outside
    assert root_is_shell_job({"pid": 4100, "ppid": 0, "pgid": 4090, "sid": 4090})
    assert not root_is_shell_job({"pid": 1, "ppid": 0, "pgid": 1, "sid": 1})


def test_a_child_started_without_setsid_is_a_shell_job_and_one_with_it_is_not() -> None:
    jobs = {}
    for new_session in (False, True):
        child = subprocess.Popen(["sleep", "30"], start_new_session=new_session)
        try:
            jobs[new_session] = shell_job(child.pid)
        finally:
            child.kill()
            child.wait()
    assert jobs == {False: True, True: False}
    assert shell_job(2**22 + 1) is False  # no such process: the dump fails on its own


def _pstree(tmp_path: Path, sid: int) -> Path:
    out = io.BytesIO()
    images.dump({"magic": "PSTREE", "entries": [
        {"pid": 1, "ppid": 0, "pgid": sid, "sid": sid, "threads": [1]},
        {"pid": 2, "ppid": 1, "pgid": sid, "sid": sid, "threads": [2]}]}, out)
    (tmp_path / "pstree.img").write_bytes(out.getvalue())
    return tmp_path


def test_the_restore_reads_a_shell_job_from_pstree_img(tmp_path: Path) -> None:
    assert dumped_as_shell_job(_pstree(tmp_path, sid=0))
    assert not dumped_as_shell_job(_pstree(tmp_path, sid=1))
    (tmp_path / "pstree.img").write_bytes(b"\x01\x02")  # cut short: warned, no shell job
    assert not dumped_as_shell_job(tmp_path)
    (tmp_path / "pstree.img").unlink()  # a container's images live elsewhere
    assert not dumped_as_shell_job(tmp_path)
