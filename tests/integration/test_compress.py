"""``migrate --compress on|off``: a cold dump's pages LZ4-compressed through ferryman's page
relay (still encrypted and mutually authenticated), or over CRIU's own TLS, each moving the
test workload with its memory verified page by page on the destination.

The wiretap (tests/support/wiretap.py) counts what the source sent the destination outside
the control connection and looks for the workload's page pattern in it.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Cluster
from tests.integration.test_page_path import CAP, CAP_MBIT, pattern, rates, wiretap

MIB = 64


@pytest.mark.parametrize("setting", ["on", "off"])
def test_compressed_or_not_every_page_arrives_encrypted(cluster: Cluster, setting: str
                                                        ) -> None:
    seed = f"compress-{setting}"
    b = cluster.start_agent("b")
    w = cluster.workload(mib=MIB, seed=seed)  # one pattern per page: compresses well
    new_pid = None
    try:
        with wiretap(cluster, "b", cluster.topology["a"].ip, pattern(seed)) as seen:
            res, report = cluster.migrate(w.pid, b, "--mode", "cold", "--compress", setting)
            assert res.returncode == 0, res.stderr
            new_pid = report["destination_pid"]
            assert isinstance(new_pid, int)
            st = w.status(new_pid)
            assert st["bad_pages"] == 0
            assert st["pages"] == MIB * 256
        c = report["compression"]
        assert (c["setting"], c["on"]) == (setting, setting == "on")
        assert not seen["needle_seen"], "page contents crossed the wire in the clear"
        if setting == "on":
            assert c["raw_bytes"] >= MIB << 20  # CRIU's whole page stream went through
            assert c["ratio"] > 5, c
            assert c["wire_bytes"] * 5 < c["raw_bytes"]
            assert seen["total"] < (MIB << 20) // 4, seen["total"]  # and the wire saw less
        else:
            assert "raw_bytes" not in c
            assert seen["total"] >= MIB << 20, seen["total"]
    finally:
        w.kill(new_pid)


def test_random_memory_goes_through_the_relay_whole(cluster: Cluster) -> None:
    """Chunks that do not shrink travel as they are: nothing lost, nothing gained."""
    b = cluster.start_agent("b")
    w = cluster.workload(mib=32, seed="compress-random", fill="random")
    new_pid = None
    try:
        res, report = cluster.migrate(w.pid, b, "--mode", "cold", "--compress", "on")
        assert res.returncode == 0, res.stderr
        new_pid = report["destination_pid"]
        assert isinstance(new_pid, int)
        assert w.status(new_pid)["bad_pages"] == 0
        c = report["compression"]
        assert c["on"]
        assert 0.95 < c["ratio"] < 1.2, c
    finally:
        w.kill(new_pid)


def test_the_relay_holds_the_bandwidth_cap(cluster: Cluster) -> None:
    """``--max-bandwidth`` paces the relay's TLS socket as CRIU paces its own (random
    pages: the frames are as large as the pages)."""
    mib, seed = 32, "compress-capped"
    b = cluster.start_agent("b")
    w = cluster.workload(mib=mib, seed=seed, fill="random")
    new_pid = None
    try:
        with wiretap(cluster, "b", cluster.topology["a"].ip, pattern(seed)) as seen:
            res, report = cluster.migrate(w.pid, b, "--mode", "cold", "--compress", "on",
                                          "--max-bandwidth", str(CAP_MBIT))
            assert res.returncode == 0, res.stderr
            new_pid = report["destination_pid"]
            assert isinstance(new_pid, int)
            assert w.status(new_pid)["bad_pages"] == 0
        assert report["compression"]["on"]
        assert seen["total"] >= mib << 20, seen["total"]
        peak, mean = rates(seen)
        assert peak <= 1.10 * CAP, f"{peak / 125_000:.0f} Mbit/s over a {CAP_MBIT} cap"
        assert mean >= 0.5 * CAP, f"only {mean / 125_000:.0f} Mbit/s under a {CAP_MBIT} cap"
    finally:
        w.kill(new_pid)
