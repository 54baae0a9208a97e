"""ferryman's pre-copy, hybrid and cold migrations between two QEMU guests with soft-dirty.

One two-guest boot (tests/vm/scenarios/ferryman_migrations.py) runs every scenario: an agent
on vm2, ``ferryman migrate`` on vm1 for a test workload that dirties its memory at a fixed
rate, then vm2 has the moved workload verify every page. The scenarios:

* ``budget``: pre-copy with the default policy (downtime budget 5 s: TCG is slow);
* ``lxd-max``: LXD policy whose goal (100 % unchanged) is never met: exactly 3 pre-dumps;
* ``lxd-goal``: LXD policy, goal 70 %: stops at the first pre-dump that meets it (the 2nd);
* ``switch``: a budget no pre-copy can meet (1 ms): the dirty set stops shrinking and the
  final step turns lazy (hybrid);
* ``hybrid``: --mode hybrid, pre-copy then a lazy final step;
* ``cold``: the same workload as ``budget``, moved cold, for the downtime ratio;
* ``shell-job``: a workload started by a shell that leads its session (``cmd &`` at a
  prompt), moved cold without the shell: CRIU's ``--shell-job`` on both sides, and on vm2 it
  is in no session of the agent's;
* ``auto``: --mode auto measures the dirty rate and picks pre-copy (cold would miss 5 s).
* ``runc-precopy``: a runc container (a counter writing its rootfs, 32 MiB held still) moved
  with pre-copy and the budget policy (``runc checkpoint --pre-dump`` per iteration);
* ``runc-hybrid``: the same container, --mode hybrid (a lazy final ``runc checkpoint``);
* ``runc-rollback``: pre-copy to an agent whose runc fails at restore: after the pre-dumps
  and the final dump the container resumes on vm1 with every write, and vm2 has none.
* ``podman-precopy``, ``podman-hybrid``: a Podman container (an echo service in Podman's host
  network, a counter, 8 MiB held still) moved with pre-copy and with hybrid while a client in
  a third network namespace talks to it through its service address, which moves too
  (tests/vm/scenarios/podman_guest.py); ``podman ps`` on both guests after;
* ``podman-rollback``: the same to an agent whose Podman runtime fails at restore: it resumes
  on vm1, ``podman ps -a`` there as before, the address back, the client still talking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.vm.vmrun import REPO, Run, VMError, make_pki, run_vm

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

MIB = 128
RATE = 100
CONTAINER_MIB = 32  # held by a sort in the container, never written again: 8192 pages
PODMAN_MIB = 8  # the same in the Podman containers (2048 pages): they move in less time
EXIT_ROLLED_BACK = 8
# A container's final step is runc's (or Podman's) work on both guests, plus the final rsync:
# measured in make test-vm (2026-12-06, CI), downtime 7.4 s (Podman, pre-copy) and 8.7-9.0 s
# (runc, a lazy final step); 4.8-5.7 s (runc, pre-copy) in earlier runs. A 5 s budget sat on
# that cost, so the policy went lazy or not by chance; 15 s is a budget pre-copy can meet
# there, and the tests check the measured downtime against it.
CONTAINER_BUDGET_MS = "15000"
SCENARIOS: list[dict[str, Any]] = [
    # TCG runs CRIU some 20x slower than hardware: a final dump with no memory at all takes
    # about a second here, so the budget is 5 s rather than the default 300 ms
    {"name": "budget", "mib": MIB, "rate": RATE,
     "args": ["--mode", "precopy", "--max-downtime", "5000"]},
    # cold with its page files, the full dump precopy is compared with (a process tree's
    # cold restore is streamed by default: the shell-job scenario below moves that way)
    {"name": "cold", "mib": MIB, "rate": RATE,
     "args": ["--mode", "cold", "--cold-restore", "images"]},
    # started by a shell as `cmd &`: its session leader stays behind (CRIU's --shell-job)
    {"name": "shell-job", "mib": 16, "rate": RATE, "shell_job": True,
     "args": ["--mode", "cold"]},
    {"name": "lxd-max", "mib": 32, "rate": RATE,
     "args": ["--mode", "precopy", "--policy", "lxd", "--max-iterations", "3", "--goal", "100"]},
    {"name": "lxd-goal", "mib": 32, "rate": RATE,
     "args": ["--mode", "precopy", "--policy", "lxd"]},
    {"name": "switch", "mib": 32, "rate": 1000,
     "args": ["--mode", "precopy", "--max-downtime", "1"]},
    {"name": "hybrid", "mib": 32, "rate": RATE, "args": ["--mode", "hybrid"]},
    # cold would take ~17 s here, pre-copy converges: auto must choose it
    {"name": "auto", "mib": MIB, "rate": RATE,
     "args": ["--mode", "auto", "--max-downtime", "5000", "--link-mbps", "80"]},
    {"name": "runc-precopy", "runc": True, "check": True, "mib": CONTAINER_MIB,
     "args": ["--mode", "precopy", "--max-downtime", CONTAINER_BUDGET_MS]},
    {"name": "runc-hybrid", "runc": True, "mib": CONTAINER_MIB, "args": ["--mode", "hybrid"]},
    # vm2's second agent (port 7071) has a runc that fails every restore
    {"name": "runc-rollback", "runc": True, "mib": CONTAINER_MIB, "port": 7071,
     "args": ["--mode", "precopy", "--max-downtime", CONTAINER_BUDGET_MS]},
    {"name": "podman-precopy", "podman": True, "check": True, "mib": PODMAN_MIB,
     "args": ["--mode", "precopy", "--max-downtime", CONTAINER_BUDGET_MS]},
    {"name": "podman-hybrid", "podman": True, "mib": PODMAN_MIB, "args": ["--mode", "hybrid"]},
    # vm2's second agent (port 7071) runs Podman with a runtime that fails every restore
    {"name": "podman-rollback", "podman": True, "mib": PODMAN_MIB, "port": 7071,
     "args": ["--mode", "precopy", "--max-downtime", CONTAINER_BUDGET_MS]},
]
PODMAN_LABELS = {"app": "echo", "ferryman.test": "1"}


@pytest.fixture(scope="module")
def guests(vm_image: float, tmp_path_factory: pytest.TempPathFactory) -> Run:
    outdir = tmp_path_factory.mktemp("vm-ferryman")
    pki = make_pki(tmp_path_factory.mktemp("vm-pki"))
    run = run_vm(["python3", "tests/vm/scenarios/ferryman_migrations.py"], outdir=outdir,
                 pair=True, env={"PKI": str(pki), "SCENARIOS": json.dumps(SCENARIOS)},
                 mem_mib=1536, cpus=1, timeout=1500, shares=(pki,))
    _summary(run, vm_image, outdir)
    return run


def _summary(run: Run, image_s: float, outdir: Path) -> None:
    print(f"\n[vm] image {image_s:.1f}s; two-guest boot + scenarios {run.seconds:.1f}s "
          f"(rc={run.rc}); logs in {outdir}")
    for sc in SCENARIOS:
        try:
            r = run.result(sc["name"])
        except VMError:
            print(f"[vm] {sc['name']}: no result")
            continue
        rep = r["report"]
        its = [i["pages_written"] for i in rep.get("iterations", [])]
        gap = r["status"].get("max_gap_ms") if "status" in r else None
        stall = r["status"].get("post_resume_stall_ms") if "status" in r else None
        print(f"[vm] {sc['name']:8} rc={r['rc']} mode={rep.get('mode')} pre-dumps={its} "
              f"final={rep.get('final_pages')} lazy={rep.get('lazy_pages')} "
              f"faults={rep.get('lazy_faults')} tail={_ms(rep.get('memory_complete_ms'))} "
              f"stall={stall} "
              f"downtime={_ms(rep.get('downtime_ms'))} predicted="
              f"{_ms(rep.get('predicted_downtime_ms'))} gap={gap} "
              f"total={_ms(rep.get('total_ms'))} | {rep.get('convergence')}")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}ms"


def result(run: Run, name: str) -> dict[str, Any]:
    r: dict[str, Any] = run.result(name)
    assert r["rc"] == 0, f"{name} failed:\n" + "\n".join(r["stderr"]) + "\n" + run.describe()
    st = r["status"]
    mib = next(s["mib"] for s in SCENARIOS if s["name"] == name)
    assert st.get("bad_pages") == 0, st
    assert st["pages"] == mib * 256, st
    assert st["writes"] > 0, st
    return r


def test_guests_run_criu_42_with_soft_dirty(guests: Run) -> None:
    for name in ("vm1", "vm2"):
        g = guests.result(f"{name}-guest")
        assert g["soft_dirty"] is True, g
        assert "Version: 4.2" in g["criu"], g


def test_precopy_moves_the_workload_with_a_small_final_dump(guests: Run) -> None:
    r = result(guests, "budget")
    rep = r["report"]
    assert rep["mode"] == "precopy"
    assert rep["policy"] == "budget"
    its = rep["iterations"]
    assert its, rep
    assert its[0]["pages_written"] >= MIB * 256
    assert its[0]["pages_skipped"] == 0
    assert rep["final_pages"] * 10 < its[0]["pages_written"], rep
    assert rep["convergence"].startswith("FINAL"), rep["convergence"]
    assert rep["predicted_downtime_ms"] is not None
    assert rep["downtime_ms"] is not None
    assert rep["restore_bytes_per_s"] > 0  # vm2 measured its page read rate on set 1
    assert not rep["switched_to_postcopy"]


def test_precopy_downtime_is_below_cold(guests: Run) -> None:
    pre = result(guests, "budget")["report"]["downtime_ms"]
    cold = result(guests, "cold")["report"]["downtime_ms"]
    assert pre < cold, (pre, cold)


def test_lxd_policy_stops_at_exactly_max_iterations_when_the_goal_is_never_met(
        guests: Run) -> None:
    rep = result(guests, "lxd-max")["report"]
    assert rep["policy"] == "lxd"
    assert len(rep["iterations"]) == 3, rep["iterations"]
    assert rep["convergence"] == "FINAL: 3 pre-dumps = max_iterations"


def test_lxd_policy_stops_at_the_first_iteration_meeting_the_goal(guests: Run) -> None:
    rep = result(guests, "lxd-goal")["report"]
    its = rep["iterations"]
    assert len(its) == 2, its
    assert its[1]["pages_skipped"] * 100 >= 70 * (its[1]["pages_skipped"]
                                                  + its[1]["pages_written"])
    assert "goal 70" in rep["convergence"], rep["convergence"]


def lazy_tail(r: dict[str, Any], stall_ms: float = 2000) -> tuple[int, int]:
    """A lazy final step's tail: every lazy page arrived within 2 x (pages x 4 KiB / the link
    rate the pre-dumps measured) + 1 s of the resume, and the workload never went longer than
    ``stall_ms`` without a heartbeat after the resume. Both are measured on vm2's clock: the
    tail by its agent, the stall from the agent's resume to the workload's first beat there,
    and between its beats there (tests/vm/scenarios/ferryman_migrations.py, verify).
    (lazy pages, faults)."""
    rep, st = r["report"], r["status"]
    pages, faults = rep["lazy_pages"], rep["lazy_faults"]
    rate = rep["bandwidth_bytes_per_s"]
    assert pages, rep
    assert faults is not None, rep
    assert rate, rep
    bound_ms = 2 * pages * 4096 / rate * 1000 + 1000
    assert rep["memory_complete_ms"] <= bound_ms, (
        f"{pages} lazy pages ({faults} by fault) took {rep['memory_complete_ms']:.0f} ms; "
        f"the link ({rate / 1e6:.1f} MB/s) allows {bound_ms:.0f} ms")
    assert st.get("resumed_at") is not None, st  # vm2's agent logged the resume
    assert st.get("moved_at") is not None, st  # the workload saw it had moved
    assert st["post_resume_stall_ms"] < stall_ms, st
    return pages, faults


def test_budget_switches_to_a_lazy_final_step_when_precopy_stalls(guests: Run) -> None:
    rep = result(guests, "switch")["report"]
    assert rep["switched_to_postcopy"] is True, rep["convergence"]
    assert rep["convergence"].startswith("SWITCH_TO_POSTCOPY"), rep["convergence"]
    assert rep["mode"] == "hybrid"
    assert rep["lazy_pages"] is not None


def test_switched_lazy_tail_is_pushed_at_link_speed(guests: Run) -> None:
    """Issue 20: after pre-dumps the lazy pages are scattered (the pages dirtied since the
    last one); CRIU's lazy-pages daemon fetched them one page per round trip, nearly all by
    fault: 46 s for 4 MiB, the workload stalled throughout. They are pushed in the background
    now (scripts/criu-patches/lazy-tail-window.patch), faults served as they come."""
    pages, faults = lazy_tail(result(guests, "switch"))
    assert pages > 200, pages  # the dirty set the pre-dumps could not shrink
    assert faults * 10 <= pages, f"{faults} of {pages} lazy pages came by fault, not by push"


def test_hybrid_mode_precopies_then_fetches_the_rest_lazily(guests: Run) -> None:
    r = result(guests, "hybrid")
    rep = r["report"]
    assert rep["mode"] == "hybrid"
    assert rep["iterations"], rep
    assert rep["lazy_pages"] is not None
    # the lazy final step fetched only what pre-copy had not already moved
    assert rep["lazy_pages"] * 4 < rep["iterations"][0]["pages_written"], rep
    lazy_tail(r)


def test_auto_mode_measures_the_dirty_rate_and_chooses_precopy(guests: Run) -> None:
    rep = result(guests, "auto")["report"]
    assert rep["mode"] == "precopy", rep["mode_reason"]
    assert "pre-copy converges" in rep["mode_reason"], rep["mode_reason"]
    assert "dirty rate measured" in rep["mode_reason"], rep["mode_reason"]
    assert rep["iterations"], rep


def test_every_scenario_reported(guests: Run) -> None:
    assert guests.rc == 0, guests.describe()
    assert REPO.is_dir()


def moved_container(run: Run, name: str) -> dict[str, Any]:
    """A container scenario that committed: on vm2 under its id, running, with every line
    the counter wrote on vm1 before the freeze (1..N on vm1, 1..M on vm2, M > N: it kept
    writing there); gone from vm1's runc."""
    r: dict[str, Any] = run.result(name)
    assert r["rc"] == 0, f"{name} failed:\n" + "\n".join(r["stderr"]) + "\n" + run.describe()
    rep = r["report"]
    assert rep["result"] == "committed", rep
    assert rep["container"] == name
    src, dst = r["source"], r["destination"]
    assert src["state"] is None, f"{name} is still known to runc on vm1: {src['state']}"
    assert dst["state"] is not None, dst
    assert dst["state"]["id"] == name
    assert dst["state"]["status"] == "running", dst["state"]
    assert src["log"]["sequential"], src["log"]
    assert dst["log"]["sequential"], dst["log"]  # nothing lost or doubled
    assert src["log"]["lines"] >= 10, src["log"]
    assert dst["log"]["lines"] > src["log"]["lines"] + 5, (src["log"], dst["log"])
    assert rep["sync"]["presync_bytes"] > 1 << 20, rep["sync"]  # busybox, while it ran
    tls = src["pre_dumps_over_tls"]
    assert tls == [True] * len(rep["iterations"]), tls  # every pre-dump's pages went over TLS
    assert "final_sync_ms" in rep["sync"], rep["sync"]
    return r


def precopied(rep: dict[str, Any], mib: int) -> None:
    """Pre-copy converged: the first pass wrote the whole memory (``mib``), the final dump
    a tenth of it at most, and it never switched to post-copy."""
    assert rep["mode"] == "precopy"
    its = rep["iterations"]
    assert its, rep
    assert its[0]["pages_written"] >= mib * 256, its
    assert rep["final_pages"] * 10 < its[0]["pages_written"], rep
    assert rep["convergence"].startswith("FINAL"), rep["convergence"]
    assert rep["downtime_ms"] is not None
    assert not rep["switched_to_postcopy"]


def hybrid(rep: dict[str, Any], mib: int) -> None:
    """Hybrid: a first pass of the whole memory (``mib``), then under a quarter of it lazily."""
    assert rep["mode"] == "hybrid"
    its = rep["iterations"]
    assert its, rep
    assert its[0]["pages_written"] >= mib * 256, its
    assert rep["lazy_pages"] is not None
    assert rep["lazy_pages"] * 4 < its[0]["pages_written"], rep


def within_budget(rep: dict[str, Any]) -> None:
    """The budget policy's promise held: the measured downtime was within the budget."""
    assert rep["policy"] == "budget"
    assert rep["downtime_ms"] <= float(CONTAINER_BUDGET_MS), rep["downtime_ms"]


def test_container_precopy_moves_it_with_a_small_final_dump(guests: Run) -> None:
    rep = moved_container(guests, "runc-precopy")["report"]
    precopied(rep, CONTAINER_MIB)
    within_budget(rep)


def allows_precopy(run: Run, name: str) -> dict[tuple[str, str], str]:
    """``ferryman check`` before scenario ``name`` passed, found soft-dirty tracking on vm1
    and allows every mode; its rows' statuses by (side, check)."""
    chk = run.result(name)["check"]
    assert chk["rc"] == 0, chk
    v = chk["verdict"]
    rows = {(r["side"], r["check"]): r["status"] for r in v["rows"]}
    assert rows[("source", "kernel.dirty-tracking")] == "pass", v["rows"]
    assert set(v["allowed_modes"]) == {"cold", "postcopy", "precopy", "hybrid"}, v
    return rows


def rolled_back_at_the_final_step(run: Run, name: str, restorer: str) -> dict[str, Any]:
    """Scenario ``name`` pre-copied, then ``restorer``'s restore failed on vm2: rolled back
    (exit 8, the error naming that restore), and the workload writes on, on vm1, with
    nothing lost or doubled."""
    r: dict[str, Any] = run.result(name)
    assert r["rc"] == EXIT_ROLLED_BACK, "\n".join(r["stderr"])
    assert f"{restorer} restore {name}" in "\n".join(r["stderr"]), r["stderr"]
    rep = r["report"]
    assert rep["result"] == "rolled_back"
    assert rep["iterations"], rep  # it failed after pre-copy, at the final step
    src = r["source"]
    assert src["log"]["sequential"], src
    assert src["log_later"]["sequential"], src  # nothing lost or doubled
    assert src["log_later"]["lines"] > src["log"]["lines"] + 5, src  # it runs on vm1 again
    return r


def test_check_runc_allows_container_precopy_with_soft_dirty(guests: Run) -> None:
    allows_precopy(guests, "runc-precopy")


def test_container_hybrid_precopies_then_fetches_the_rest_lazily(guests: Run) -> None:
    hybrid(moved_container(guests, "runc-hybrid")["report"], CONTAINER_MIB)


def test_container_precopy_rolls_back_when_the_restore_fails(guests: Run) -> None:
    r = rolled_back_at_the_final_step(guests, "runc-rollback", "runc")
    src = r["source"]
    assert src["state"] is not None
    assert src["state"]["status"] == "running", src["state"]
    assert r["destination"]["state"] is None, r["destination"]


def client_talked(r: dict[str, Any]) -> dict[str, Any]:
    """The echo client (a third network namespace, through the service address) talked
    throughout the migration and after it: no error, nothing lost, doubled or out of order."""
    assert r["client_alive"], "the client must still be talking after the migration"
    c: dict[str, Any] = r["client"]
    assert c["error"] is None, c
    assert c["bad"] == 0, c
    assert c["answered"] == c["sent"], c
    assert c["answered"] > 100, c
    return c


def moved_podman(run: Run, name: str) -> dict[str, Any]:
    """A Podman scenario that committed: `podman ps` on vm2 lists the container running as it
    ran on vm1 (id, name, image, labels), under the PID ferryman resumed, writing on; `podman
    ps -a` on vm1 no longer has it; the service address is on vm2 only; the client talked."""
    r: dict[str, Any] = run.result(name)
    assert r["rc"] == 0, f"{name} failed:\n" + "\n".join(r["stderr"]) + "\n" + run.describe()
    rep = r["report"]
    assert rep["result"] == "committed", rep
    assert rep["container"] == name
    src, dst = r["source"], r["destination"]
    [before] = src["before"]
    assert before["State"] == "running", before
    assert src["after"] == [], f"vm1's Podman still has {name}: {src['after']}"
    [after] = dst["ps"]
    assert after["State"] == "running", after
    for key in ("Id", "Names", "Image", "ImageID", "Labels", "Command"):
        assert after[key] == before[key], key
    assert after["Labels"] == PODMAN_LABELS
    assert after["Pid"] == rep["destination_pid"], "the PID ferryman resumed is Podman's"
    assert dst["log"]["sequential"], dst["log"]  # nothing lost or doubled
    assert dst["log_later"]["sequential"], dst["log_later"]
    assert dst["log_later"]["lines"] > dst["log"]["lines"] + 5, dst  # it writes on, on vm2
    assert dst["address"] is True, "the service address is on vm2"
    assert src["address"] is False, "and gone from vm1"
    c = client_talked(r)
    # the client's longest wait is the frozen window, not a retransmission timer's backoff
    assert c["max_gap_ms"] < rep["downtime_ms"] + 3000, (c, rep["downtime_ms"])
    return r


def test_podman_precopy_moves_it_with_its_client_and_address(guests: Run) -> None:
    rep = moved_podman(guests, "podman-precopy")["report"]
    precopied(rep, PODMAN_MIB)
    within_budget(rep)


def test_check_podman_allows_precopy_with_soft_dirty(guests: Run) -> None:
    rows = allows_precopy(guests, "podman-precopy")
    assert rows[("destination", "podman.image")] == "pass", rows


def test_podman_hybrid_precopies_then_fetches_the_rest_lazily(guests: Run) -> None:
    hybrid(moved_podman(guests, "podman-hybrid")["report"], PODMAN_MIB)


def test_podman_precopy_rolls_back_leaving_podmans_view_on_vm1_unchanged(guests: Run) -> None:
    r = rolled_back_at_the_final_step(guests, "podman-rollback", "podman")
    src, dst = r["source"], r["destination"]
    assert src["after"] == src["before"], "podman ps -a on vm1 is what it was"
    assert src["address"] is True, "the service address is back on vm1"
    assert dst["ps"] == [], f"vm2's Podman keeps a record: {dst['ps']}"
    assert dst["address"] is False
    client_talked(r)


def test_a_shell_job_moves_and_leaves_the_agents_session_alone(guests: Run) -> None:
    r = result(guests, "shell-job")
    assert r["source_sid"] != r["source_pid"], r  # it was a shell job on vm1
    st = r["status"]
    assert st["sid"] != st["agent_sid"], st  # in the restoring criu's session, not the agent's
    assert st["pgid"] == st["sid"], st  # and its process group
    assert r["report"]["streamed"] is True, r["report"]  # cold's default: a streamed restore
