"""Death of the test run by SIGTERM (what CI cancellation and `timeout` send).

SIGINT and SIGKILL of the controller and SIGKILL of one xdist worker are covered by
tests/harness/test_harness.py; this adds SIGTERM, to the controller alone and to the whole
process group. Whatever the run had started must be gone within 30 s.
"""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from chaoslib import harness


@pytest.mark.parametrize("how", ["sigterm-controller", "sigterm-group"])
def test_sigterm_of_the_run_leaves_nothing(inner: tuple[pytest.Pytester, str], how: str) -> None:
    pytester, run_id = inner
    pytester.makepyfile(test_slow=harness.SLOW_TEST)
    proc = harness._popen(pytester, run_id, "-n", "2", "--dist", "each", "-q")
    try:
        running = harness._wait_running(run_id, services=6)
        assert len(running) >= 6
        if how == "sigterm-group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=harness.CLEAN_WITHIN_S)
        took = harness._wait_clean(run_id)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # xdist workers orphaned by a SIGTERM'd controller: end them (our process group only)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    print(f"{how}: exit {proc.returncode}, clean {took:.1f}s after the signal")
