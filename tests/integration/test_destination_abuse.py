"""The destination's files, containers and bookkeeping under abuse by a certified peer.

Like test_agent_abuse.py (whose hand-driven peer these tests share): a real agent on a
namespace node, real TLS, real rsync; the peer does what a real controller never would.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from ferryman import wire
from ferryman.agent.orphans import orphan_record, write_outcome
from ferryman.fs import rsync
from ferryman.host.procfs import identity
from tests.integration.conftest import PY, Agent, Cluster, run_cli
from tests.integration.test_agent_abuse import planned, still_serves, wait_for
from tests.integration.test_cold import one_error_line
from tests.support.bundle import Container, make_bundle, run_container
from tests.support.peer import client_context, connect

PS_IOV_CLOSE = struct.pack("<I4xQQQ", 0x1023, 0, 0, 0)  # CRIU's page server: "done", exit 0


def runc_agent(cluster: Cluster) -> Agent:
    """Agent b with a runc root of its own (it refuses container ids runc knows there)."""
    return cluster.start_agent("b", "--runc-root", str(cluster.base / "runc-b"))


def push(cluster: Cluster, dest: Agent, port: int, src: Path, into: str
         ) -> tuple[int, str]:
    """rsync from node a, through ferryman's TLS tunnel, ``src/`` into ``into`` on ``dest``."""
    p = cluster.pki
    rsh = rsync.tunnel_rsh(port, p / "ca.pem", p / "a.pem", p / "a.key", python=PY)
    res = cluster.topology["a"].run("rsync", *rsync.CLIENT_OPTIONS, "-e", " ".join(rsh),
                                    "--delete", f"{src}/", f"{dest.node.ip}:{into}/",
                                    check=False)
    return res.returncode, res.stderr


@pytest.mark.timeout(180)
def test_a_plan_cannot_make_the_destination_sync_outside_its_bundles(cluster: Cluster) -> None:
    """Finding 1: the destination syncs only into the container's own directories, which it
    chooses itself, and removes them when the migration does not commit."""
    victim = cluster.base / "outside" / "etc"  # stands for /etc, /root/.ssh, /usr/bin ...
    victim.mkdir(parents=True)
    (victim / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    src = cluster.base / "attacker"
    src.mkdir()
    (src / "pwned").write_text("written by a peer with a valid certificate\n")
    b = runc_agent(cluster)
    cid = f"box-{uuid.uuid4().hex[:6]}"
    slot = b.state_dir / "bundles" / cid
    targets = [{"kind": "runc", "id": cid, "bundle": str(victim), "sync": [str(victim)]},
               {"kind": "runc", "id": cid, "rootfs": "rootfs", "sync": [str(victim)]},
               {"kind": "runc", "id": cid, "rootfs": "../../../outside/etc"},
               {"kind": "runc", "id": cid, "rootfs": str(victim)},
               {"kind": "runc", "id": cid, "rootfs": "rootfs"}]
    answers = []
    for target in targets:
        p, answer = planned(cluster, b, target=json.dumps(target))
        with p:
            answers.append(type(answer).__name__)
            if isinstance(answer, wire.Ready) and answer.sync_port:
                for into in (str(victim), f"bundle/../../../../{victim}", "rootfs"):
                    rc, err = push(cluster, b, answer.sync_port, src, into)
                    assert rc != 0, f"rsync into {into} was let through"
                    assert "not part of the planned migration" in err, err
                rc, err = push(cluster, b, answer.sync_port, src, "bundle")
                assert rc == 0, err
                assert (slot / "bundle" / "pwned").exists(), "the bundle goes to its slot"
            if isinstance(answer, wire.Ready):
                p.send(wire.Abort("never mind"))
                assert isinstance(p.recv(), wire.Aborted)
    assert answers == ["Refused"] * 4 + ["Ready"]
    assert sorted(os.listdir(victim)) == ["passwd"], "files outside the slot were touched"
    assert not slot.exists(), "an aborted migration's synced files stay"
    assert still_serves(cluster, b)


def close_page_server(cluster: Cluster, dest: Agent, port: int) -> None:
    """Tell the migration's CRIU page server that no pages come (it exits cleanly)."""
    raw = connect(cluster.topology["a"].name, dest.node.ip, port)
    with client_context(cluster.pki, "a").wrap_socket(raw, server_hostname=dest.node.ip) as s:
        s.sendall(PS_IOV_CLOSE)
        s.recv(4)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("when", ["before the restore", "while runc restores"])
def test_a_failed_restore_leaves_a_container_it_did_not_make_alone(cluster: Cluster,
                                                                    when: str) -> None:
    """Finding 7: a container created under the planned id after the Plan (an operator, a
    migration that committed meanwhile) survives this migration's failed restore, whether it
    was there before the restore began or appeared while runc restored (a runc wrapper
    starts it, then fails the restore)."""
    cid = f"op-{uuid.uuid4().hex[:6]}"
    root = cluster.base / "runc-b"
    bundle = make_bundle(cluster.base / "op-bundle", ["sleep", "300"], cluster.topology["b"])
    operators = Container(cid, root, bundle)
    extra: list[str] = []
    if when == "while runc restores":
        racing = cluster.base / "racing-runc"
        racing.write_text(f'#!/bin/sh\ncase " $* " in *" restore "*)\n'
                          f'  runc --root {root} run --detach --bundle {bundle} {cid} '
                          f'</dev/null >/dev/null 2>&1; exit 1 ;;\nesac\nexec runc "$@"\n')
        racing.chmod(0o755)
        extra = ["--runc", str(racing)]
    b = cluster.start_agent("b", "--runc-root", str(root), *extra)
    p, ready = planned(cluster, b, target=json.dumps({"kind": "runc", "id": cid,
                                                      "rootfs": "rootfs"}))
    try:
        with p:
            assert isinstance(ready, wire.Ready), ready
            rc, err = push(cluster, b, ready.sync_port, bundle, "bundle")  # a valid bundle
            assert rc == 0, err
            if when == "before the restore":
                run_container(cluster.topology["b"], root, bundle, cid)
            close_page_server(cluster, b, ready.page_server_port)
            p.send_file("junk.img", b"junk")
            p.send(wire.Restore(file_count=1, total_bytes=4))
            failed = p.recv(120)
            assert isinstance(failed, wire.Failed), failed
            state = operators.state()
            assert state is not None, "the failed restore deleted a container it did not make"
            assert state["status"] == "running"
            assert state["bundle"] == str(bundle)
            if when == "before the restore":
                assert f"a container with id {cid!r} appeared" in failed.message, failed.message
    finally:
        operators.delete()
    assert still_serves(cluster, b)


@pytest.mark.timeout(180)
def test_an_image_file_cannot_forge_an_orphan_record(cluster: Cluster) -> None:
    """Finding 8: an image file named like the agent's bookkeeping is only an image file:
    'orphans' neither lists nor kills what it names, not even after the agent died with the
    session open (the next start removes that migration directory like any interrupted one)."""
    b = cluster.start_agent("b")
    victim = subprocess.Popen(["sleep", "600"])  # stands for any service on the destination
    try:
        mid = f"forged-{uuid.uuid4().hex[:8]}"
        p, ready = planned(cluster, b, migration_id=mid)
        with p:
            assert isinstance(ready, wire.Ready), ready
            ident = identity(victim.pid)
            p.send_file("outcome", orphan_record(ident).encode())
            assert wait_for((b.state_dir / "migrations" / mid / "outcome").exists)
            listing = run_cli("orphans", "--state-dir", str(b.state_dir))
            assert listing.stdout.strip() == "no orphaned workloads", listing.stdout
            killed = run_cli("orphans", "kill", mid, "--state-dir", str(b.state_dir))
            assert killed.returncode != 0
            assert one_error_line(killed.stderr), killed.stderr
            assert victim.poll() is None, "the forged record got a process killed"
            b.kill()  # the agent dies with that session open
        cluster.start_agent("b")
        assert not (b.state_dir / "migrations" / mid).exists()
        # A record of the agent's own whose process no longer is the stopped copy it kept
        # (here: running) is refused too.
        write_outcome(b.state_dir, "held", orphan_record(ident))
        killed = run_cli("orphans", "kill", "held", "--state-dir", str(b.state_dir))
        assert killed.returncode != 0
        assert "no longer stopped" in killed.stderr, killed.stderr
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.timeout(120)
def test_image_files_named_log_are_refused_and_never_kept(cluster: Cluster) -> None:
    """Finding 9: a peer's '*.log' image files do not survive in STATE_DIR/failed (they
    filled the disk for good); what a failed migration keeps there is the agent's own logs."""
    b = cluster.start_agent("b")
    planted = os.urandom(1 << 20)
    for name in ("restore.log", "notes.log"):
        mid = f"logs-{uuid.uuid4().hex[:8]}"
        p, ready = planned(cluster, b, migration_id=mid)
        with p:
            assert isinstance(ready, wire.Ready), ready
            with contextlib.suppress(OSError):  # the agent may have ended the session
                for i in range(4):
                    p.send(wire.FileChunk(name=name, offset=i * len(planted), data=planted))
                p.send(wire.Abort("changed my mind"))
                p.recv()
        assert wait_for(lambda mid=mid: not (b.state_dir / "migrations" / mid).exists())
        kept = b.state_dir / "failed" / mid
        names = sorted(f.name for f in kept.iterdir()) if kept.exists() else []
        assert set(names) <= {"cpuinfo-check.log", "page-server.log"}, names
        for f in kept.glob("*"):
            assert planted[:4096] not in f.read_bytes(), f"{f} holds what the peer sent"
    assert still_serves(cluster, b)
