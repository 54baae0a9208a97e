"""Protocol fuzzer (issue 16): a real destination agent, real mutual TLS, mutated conversations.

Hypothesis draws each sequence (tests/fuzz/sequences.py) from a seed; the runner plays them in
concurrent batches from node a's namespace with cluster certificates and checks the agent after
each batch (tests/fuzz/watch.py): alive and answering a fresh Hello, no traceback in its log,
no file outside its state directory, no migration directory, child or fd left.

Environment: FERRYMAN_FUZZ_SEQUENCES (default 10000), FERRYMAN_FUZZ_SEED (default: a new one,
printed; set it to replay a run), FERRYMAN_FUZZ_SECONDS (time box, default 300),
FERRYMAN_FUZZ_BATCH (sequences between two checks of the agent, default 96),
FERRYMAN_FUZZ_CONCURRENCY (sequences in flight together, default 12).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import warnings

import pytest
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings

from tests.fuzz.conftest import FuzzTarget
from tests.fuzz.runner import Runner, TimeBoxEnded, probe_script
from tests.fuzz.script import Script
from tests.fuzz.sequences import scripts
from tests.fuzz.values import FuzzContext

SEQUENCES = int(os.environ.get("FERRYMAN_FUZZ_SEQUENCES", "10000"))
SEED = int(os.environ.get("FERRYMAN_FUZZ_SEED") or secrets.randbelow(2**32))
SECONDS = float(os.environ.get("FERRYMAN_FUZZ_SECONDS", "300"))
BATCH = int(os.environ.get("FERRYMAN_FUZZ_BATCH", "96"))
CONCURRENCY = int(os.environ.get("FERRYMAN_FUZZ_CONCURRENCY", "12"))

pytestmark = pytest.mark.integration


@pytest.mark.timeout(SECONDS + 300)
def test_agent_survives_mutated_sequences(fuzz_target: FuzzTarget) -> None:
    print(f"protocol fuzzer: seed {SEED} (FERRYMAN_FUZZ_SEED={SEED} replays this run), "
          f"{SEQUENCES} sequences, batches of {BATCH}, {CONCURRENCY} at once, "
          f"at most {SECONDS:.0f} s")
    watch = fuzz_target.start()
    ctx = FuzzContext(fuzz_target.cpuinfo(), fuzz_target.marker, fuzz_target.token)
    runner = Runner(fuzz_target.player(), watch, fuzz_target.start, probe_script(), batch=BATCH,
                    concurrency=CONCURRENCY)
    started = time.monotonic()
    runner.deadline = started + SECONDS

    @settings(max_examples=SEQUENCES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @seed(SEED)
    @given(scripts(ctx))
    def fuzz(script: Script) -> None:
        runner.add(script)

    try:
        watch.baseline()
        with contextlib.suppress(TimeBoxEnded):
            fuzz()
        runner.flush()
    finally:
        runner.close()
    took = time.monotonic() - started
    print(f"protocol fuzzer: {runner.played} sequences in {runner.batches} batches, "
          f"{took:.0f} s ({runner.played / took:.0f}/s), {len(runner.findings)} finding(s)")
    if runner.played < SEQUENCES:
        warnings.warn(f"the fuzzer's time box ({SECONDS:.0f} s) ended it after "
                      f"{runner.played} of {SEQUENCES} sequences", stacklevel=1)
    report = "\n\n".join(f.describe() for f in runner.findings)
    assert not runner.findings, f"seed {SEED}: the agent broke an invariant:\n\n{report}"
