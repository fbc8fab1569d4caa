"""Postgres dies under a running stack: services say not-ready, clients fail in bounded time
with the services' logs attached, and nothing hangs (stopping the broken stack included).

The DB lives on a tmpfs, so a killed Postgres cannot come back with its data: each test here
uses a stack of its own (or an inner pytest run's stack) and throws it away.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest
from chaoslib import harness, run_count, wait_gone

from tasker_testing.clients import ApiError, OrchestrationClient, RetryPolicy, WorkerClient
from tasker_testing.stack import Stack

NOT_READY_WITHIN_S = 20
CLIENT_TIMEOUT_S = 5.0


def _wait_status(probe: Callable[[], int], want: int, within: float) -> float:
    t0 = time.monotonic()
    last: object = None
    while time.monotonic() - t0 < within:
        try:
            last = probe()
        except httpx.HTTPError as exc:
            last = exc
        if last == want:
            return time.monotonic() - t0
        time.sleep(0.1)
    pytest.fail(f"wanted {want} within {within}s, last answer: {last!r}")


def test_killed_postgres_makes_services_not_ready_and_clients_fail_fast(
    start_own_stack: Callable[..., AbstractContextManager[Stack]],
) -> None:
    with start_own_stack("pgloss") as stack:
        orch = OrchestrationClient(
            lambda: stack.orchestration_url,
            timeout=CLIENT_TIMEOUT_S,
            retry=RetryPolicy(retries=2, wait_initial=0.1, wait_max=0.5),
        )
        worker = WorkerClient(lambda: stack.worker_url, timeout=CLIENT_TIMEOUT_S)
        with orch, worker:
            assert orch.ready().ok
            assert worker.ready().ok
            stack.kill("postgres")
            t_orch = _wait_status(lambda: orch.ready().http_status, 503, NOT_READY_WITHIN_S)
            t_worker = _wait_status(lambda: worker.ready().http_status, 503, NOT_READY_WITHIN_S)
            ready = orch.ready()
            assert ready.status, ready.raw  # a body that says what is wrong, not just a code
            t0 = time.monotonic()
            with pytest.raises((ApiError, httpx.TimeoutException, httpx.TransportError)) as exc:
                orch.create_task(
                    "mathematical_sequence", "linear_workflow", context={"even_number": 6}
                )
            failed_after = time.monotonic() - t0
            if isinstance(exc.value, ApiError):
                assert exc.value.status >= 500, exc.value
                assert exc.value.code, f"error body not in the documented shape: {exc.value.body}"
            # 3 attempts of at most the client timeout each, plus back-off: bounded
            assert failed_after < 3 * CLIENT_TIMEOUT_S + 5, failed_after
            # liveness is not readiness: the process itself is still up and answering
            assert orch.live().http_status == 200
            logs = stack.logs("orchestration", tail=200)
            assert logs.strip(), "orchestration logs are available after the DB died"
        t0 = time.monotonic()
    stopped_after = time.monotonic() - t0
    assert stopped_after < 30, f"stopping a stack with a dead DB took {stopped_after:.1f}s"
    print(
        f"not ready after: orchestration {t_orch:.1f}s, worker {t_worker:.1f}s; "
        f"create_task failed after {failed_after:.1f}s with {exc.value!r}; "
        f"stack removed in {stopped_after:.1f}s"
    )


DB_DIES = """
def test_db_dies_mid_test(tasker_stack, task_factory):
    tasker_stack.kill("postgres")
    task_factory.run(timeout=10)
"""


def test_db_death_inside_a_test_fails_it_with_logs_and_leaves_nothing(
    inner: tuple[pytest.Pytester, str],
) -> None:
    """Through the plugin: the test fails (no hang), the report carries every service's log."""
    pytester, run_id = inner
    pytester.makepyfile(test_dbdies=DB_DIES)
    t0 = time.monotonic()
    try:
        result = harness._pytest(pytester, run_id, "-q", timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("the inner run hung after its database died")
    took = time.monotonic() - t0
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "1 failed" in result.stdout, out
    for service in ("postgres", "orchestration", "worker"):
        assert f"tasker {service} log" in result.stdout, out
    wait_gone(run_id, within=30)
    assert not any(run_count(run_id).values())
    print(f"inner run with a dead DB failed after {took:.1f}s (python {sys.version_info[:2]})")
