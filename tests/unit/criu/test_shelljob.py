"""Shell jobs: trees whose session leader stays behind (criu/shelljob.py)."""

from __future__ import annotations

import subprocess

from ferryman.criu.shelljob import root_is_shell_job, shell_job


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
