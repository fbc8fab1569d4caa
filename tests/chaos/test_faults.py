"""Faults in a running stack: a killed worker, a restarted orchestration.

Both run on a stack of this module's own (a fault must not poison the session's shared stack).
Each fault is bounded: readiness waits and workflow waits have timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tasker_testing.clients import OrchestrationClient, Task
from tasker_testing.stack import Stack

# (namespace, name, final step, result for n, steps): the documented results (docs/templates.md)
DAG = ("mixed_dag_workflow", "complex_dag", "dag_finalize", lambda n: 3 * n**8, 7)
TREE = ("tree_workflow", "hierarchical_tree", "tree_final_convergence", lambda n: 4 * n**8, 8)
LINEAR = ("linear_workflow", "mathematical_sequence", "linear_step_4", lambda n: n**16, 4)
BATCH = [(DAG if i % 2 else TREE, 2 * (i % 5 + 1)) for i in range(10)]
WAIT_S = 90  # a killed in-flight step is redelivered after the 5 s visibility timeout


@pytest.fixture(scope="module")
def stack(start_own_stack: Callable[..., AbstractContextManager[Stack]]) -> Iterator[Stack]:
    with start_own_stack("faults") as own:
        yield own


@pytest.fixture
def client(stack: Stack) -> Iterator[OrchestrationClient]:
    # a callable base URL: the client follows orchestration to its new port after a restart
    with OrchestrationClient(lambda: stack.orchestration_url) as c:
        yield c


def _create_batch(client: OrchestrationClient, tag: str) -> list[tuple[Task, Any, int]]:
    tasks = []
    for (namespace, name, final, result, total), n in BATCH:
        task = client.create_task(name, namespace, context={"even_number": n}, tags=[tag])
        tasks.append((task, (final, result(n), total), n))
    return tasks


def _step_counts(stack: Stack, task_uuids: list[str]) -> dict[str, int]:
    with stack.connect() as conn:
        rows = conn.execute(
            "SELECT current_state, count(*) FROM tasker.workflow_steps "
            "WHERE task_uuid = ANY(%s::uuid[]) GROUP BY 1",
            [task_uuids],
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


def _wait_mid_workflow(
    stack: Stack, task_uuids: list[str], total: int, *, want_in_flight: bool = False
) -> dict[str, int]:
    """Until some steps are complete and some are not: the moment to inject the fault.

    ``want_in_flight``: prefer (for up to 5 s) a moment when a step is in the worker's hands
    (``in_progress``), so that the kill exercises redelivery after the visibility timeout.
    """
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        counts = _step_counts(stack, task_uuids)
        done = counts.get("complete", 0)
        mid = 3 <= done < total
        in_flight = counts.get("in_progress", 0) > 0
        if mid and (in_flight or not want_in_flight or time.monotonic() - t0 > 5):
            return counts
        time.sleep(0.01)
    pytest.fail(f"never saw the batch mid-workflow: {_step_counts(stack, task_uuids)}")


def _wait_all(client: OrchestrationClient, tasks: list[tuple[Task, Any, int]]) -> list[Task]:
    with ThreadPoolExecutor(max_workers=5) as pool:
        return list(pool.map(lambda t: client.wait_for_completion(t[0].task_uuid, WAIT_S), tasks))


def _assert_each_step_completed_once(stack: Stack, task_uuids: list[str]) -> dict[str, int]:
    """Every step reached `complete` exactly once (its effect was applied once)."""
    with stack.connect() as conn:
        rows = conn.execute(
            """
            SELECT s.step_uuid, s.name, s.current_state, s.attempts,
                   count(*) FILTER (WHERE t.to_state = 'complete') AS completions,
                   count(*) FILTER (WHERE t.to_state = 'in_progress') AS starts
            FROM tasker.workflow_steps s
            LEFT JOIN tasker.workflow_step_transitions t ON t.step_uuid = s.step_uuid
            WHERE s.task_uuid = ANY(%s::uuid[])
            GROUP BY s.step_uuid, s.name, s.current_state, s.attempts
            """,
            [task_uuids],
        ).fetchall()
        task_done = conn.execute(
            "SELECT task_uuid, count(*) FROM tasker.task_transitions "
            "WHERE task_uuid = ANY(%s::uuid[]) AND to_state = 'complete' GROUP BY 1",
            [task_uuids],
        ).fetchall()
    bad = [r for r in rows if r[2] != "complete" or r[4] != 1]
    assert not bad, f"steps not completed exactly once (uuid, name, state, attempts, n): {bad}"
    assert sorted(int(n) for _, n in task_done) == [1] * len(task_uuids), task_done
    return {
        "steps": len(rows),
        "restarted_steps": sum(1 for r in rows if r[5] > 1),
        "max_attempts_used": max(int(r[3]) for r in rows),
    }


def _assert_results(done: list[Task], tasks: list[tuple[Task, Any, int]]) -> None:
    for task, (_, (final, expected, total), n) in zip(done, tasks, strict=True):
        assert task.status == "complete", f"n={n}: {task}"
        assert task.completed_steps == total
        assert task.step(final).result == expected, f"{final} for n={n}"


def test_worker_killed_mid_workflow_then_restarted(
    stack: Stack, client: OrchestrationClient
) -> None:
    tasks = _create_batch(client, "chaos:worker-kill")
    uuids = [t.task_uuid for t, _, _ in tasks]
    total = sum(spec[2] for _, spec, _ in tasks)
    before = _wait_mid_workflow(stack, uuids, total, want_in_flight=True)
    stack.kill("worker")
    at_kill = _step_counts(stack, uuids)
    assert at_kill.get("complete", 0) < total, "the fault must hit the batch mid-workflow"
    time.sleep(1.5)
    # with the worker down no step runs: only results it had already sent can still complete
    frozen = _step_counts(stack, uuids)
    already_done = sum(at_kill.get(s, 0) for s in ("complete", "enqueued_for_orchestration"))
    assert frozen.get("complete", 0) <= already_done + at_kill.get("in_progress", 0), (
        at_kill,
        frozen,
    )
    assert frozen.get("complete", 0) < total, f"steps ran without a worker: {frozen}"
    t0 = time.monotonic()
    stack.start_service("worker", timeout=60)
    done = _wait_all(client, tasks)
    recovered = time.monotonic() - t0
    _assert_results(done, tasks)
    stats = _assert_each_step_completed_once(stack, uuids)
    print(f"worker kill: before={before} at kill={at_kill}; recovered in {recovered:.1f}s; {stats}")


def test_orchestration_restarted_mid_workflow(stack: Stack, client: OrchestrationClient) -> None:
    tasks = _create_batch(client, "chaos:orchestration-restart")
    uuids = [t.task_uuid for t, _, _ in tasks]
    total = sum(spec[2] for _, spec, _ in tasks)
    _wait_mid_workflow(stack, uuids, total)
    old_url = stack.orchestration_url
    t0 = time.monotonic()
    stack.restart("orchestration", timeout=60)
    at_restart = _step_counts(stack, uuids)
    done = _wait_all(client, tasks)
    print(
        f"orchestration restart: {old_url} -> {stack.orchestration_url}, steps {at_restart}, "
        f"all done {time.monotonic() - t0:.1f}s after the restart"
    )
    _assert_results(done, tasks)
    _assert_each_step_completed_once(stack, uuids)


def test_stack_is_healthy_after_the_faults(stack: Stack, client: OrchestrationClient) -> None:
    """A fresh workflow after both faults: nothing half-broken stays behind."""
    namespace, name, final, result, _ = LINEAR
    task = client.create_task(name, namespace, context={"even_number": 6})
    done = client.wait_for_completion(task.task_uuid, 30)
    assert done.status == "complete"
    assert done.step(final).result == result(6)
    assert client.ready().ok
