"""Which tasks CRIU without CAP_SYS_RESOURCE cannot dump (parsers; a fake /proc)."""

from __future__ import annotations

from pathlib import Path

from ferryman.host.credentials import credentials, difference, lacks_sys_resource, problem

ROOT = "Name:\tx\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n"
NO_SYS_RESOURCE = ROOT.replace("000001ffffffffff", "000001fffeffffff")


def status(uid: int = 0, gid: int = 0, cap: str = "000001fffeffffff") -> str:
    return (f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\n"
            f"CapEff:\t{cap}\n")


def fake_proc(tmp: Path, own: str, tasks: dict[int, tuple[str, str]]) -> Path:
    (tmp / "self").mkdir()
    (tmp / "self" / "status").write_text(own)
    for pid, (comm, text) in tasks.items():
        (tmp / str(pid)).mkdir()
        (tmp / str(pid) / "status").write_text(text)
        (tmp / str(pid) / "comm").write_text(comm + "\n")
    return tmp


def test_the_fields_are_read_as_text() -> None:
    assert credentials(ROOT) == {"Uid": "0 0 0 0", "Gid": "0 0 0 0",
                                 "CapEff": "000001ffffffffff"}


def test_cap_sys_resource_is_bit_24() -> None:
    assert not lacks_sys_resource(ROOT)
    assert lacks_sys_resource(NO_SYS_RESOURCE)
    assert not lacks_sys_resource("Name:\tx\n")  # unknown: no claim


def test_a_user_a_group_or_fewer_capabilities_differ() -> None:
    ours = credentials(status())
    assert difference(ours, credentials(status())) == ""
    assert difference(ours, credentials(status(uid=106, gid=110, cap="0"))) == \
        "runs as uid 106"
    assert difference(ours, credentials(status(gid=30))) == "runs as gid 30"
    assert "dropped capabilities" in difference(ours, credentials(status(cap="400")))


def test_named_only_where_criu_lacks_cap_sys_resource(tmp_path: Path) -> None:
    tasks = {7: ("nginx", status()), 8: ("mosquitto", status(uid=106))}
    assert problem([7, 8], fake_proc(tmp_path, ROOT, tasks)) == ""


def test_the_first_task_with_other_credentials_is_named(tmp_path: Path) -> None:
    tasks = {7: ("nginx", status()), 8: ("mosquitto", status(uid=106)),
             9: ("dnsmasq", status(gid=30))}
    proc = fake_proc(tmp_path, NO_SYS_RESOURCE, tasks)
    assert problem([7, 8, 9], proc) == "PID 8 (mosquitto) runs as uid 106"
    assert problem([7, 404], proc) == ""  # a task gone meanwhile is no problem
