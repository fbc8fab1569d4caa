"""Workflows through the orchestration API, with the results documented in config/templates."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tasker_testing.clients import OrchestrationClient
from tasker_testing.plugin import TaskFactory

# (namespace, name, final step, expected result for even_number 6, total steps)
WORKFLOWS = [
    ("linear_workflow", "mathematical_sequence", "linear_step_4", 6**16, 4),
    ("diamond_workflow", "parallel_computation", "diamond_end", 6**8, 4),
    ("tree_workflow", "hierarchical_tree", "tree_final_convergence", 4 * 6**8, 8),
    ("mixed_dag_workflow", "complex_dag", "dag_finalize", 3 * 6**8, 7),
]


@pytest.mark.smoke
def test_linear_workflow_completes_with_n_pow_16(task_factory: TaskFactory) -> None:
    task = task_factory.run("mathematical_sequence", "linear_workflow", context={"even_number": 6})
    assert task.status == "complete"
    assert task.completion_percentage == 100
    assert task.total_steps == 4
    assert task.failed_steps == 0
    assert task.step("linear_step_4").result == 2821109907456 == 6**16
    assert [task.step(f"linear_step_{i}").result for i in (1, 2, 3)] == [6**2, 6**4, 6**8]


@pytest.mark.parametrize(("namespace", "name", "final", "expected", "total"), WORKFLOWS[1:])
def test_dag_workflows_complete_with_documented_result(
    task_factory: TaskFactory, namespace: str, name: str, final: str, expected: int, total: int
) -> None:
    task = task_factory.run(name, namespace, context={"even_number": 6})
    assert task.status == "complete", task
    assert task.total_steps == total
    assert task.completed_steps == total
    assert task.failed_steps == 0
    assert task.completion_percentage == 100
    assert all(s.current_state == "complete" for s in task.steps)
    assert task.step(final).result == expected


def test_other_inputs_give_other_results(task_factory: TaskFactory) -> None:
    task = task_factory.run("parallel_computation", "diamond_workflow", context={"even_number": 4})
    assert task.step("diamond_end").result == 4**8


@pytest.mark.parametrize("fail_count", [1, 2])
def test_retry_succeeds_within_max_attempts(task_factory: TaskFactory, fail_count: int) -> None:
    task = task_factory.run(
        "flaky_computation", "retry_workflow", context={"even_number": 6, "fail_count": fail_count}
    )
    assert task.status == "complete", task
    flaky = task.step("flaky_step")
    assert flaky.attempts == fail_count + 1
    assert flaky.result == 36
    assert task.step("retry_finalize").result == 1296


def test_retries_exhausted_end_the_task_in_error(task_factory: TaskFactory) -> None:
    task = task_factory.run(
        "flaky_computation", "retry_workflow", context={"even_number": 6, "fail_count": 3}
    )
    assert task.status == "error", task
    flaky = task.step("flaky_step")
    assert flaky.current_state == "error"
    assert flaky.attempts == flaky.max_attempts == 3
    assert flaky.error, f"the step's last error is reported: {flaky.raw}"
    assert task.failed_steps >= 1
    assert task.step("retry_finalize").current_state != "complete"


def test_overflow_is_an_error_not_a_wrong_number(task_factory: TaskFactory) -> None:
    task = task_factory.run("mathematical_sequence", "linear_workflow", context={"even_number": 16})
    assert task.status == "error"
    assert any(s.current_state == "error" for s in task.steps)


def test_ten_concurrent_workflows_all_complete_correctly(
    task_factory: TaskFactory, orchestration_client: OrchestrationClient
) -> None:
    inputs = [2 * (i + 1) for i in range(10)]  # 2..20: the linear ones stay small enough below
    specs = [WORKFLOWS[1 + i % 3] for i in range(10)]
    tasks = [
        task_factory(name, namespace, context={"even_number": n})
        for (namespace, name, *_), n in zip(specs, inputs, strict=True)
    ]
    with ThreadPoolExecutor(max_workers=10) as pool:
        done = list(
            pool.map(lambda t: orchestration_client.wait_for_completion(t.task_uuid, 60), tasks)
        )
    for (_, _, final, _, _), n, task in zip(specs, inputs, done, strict=True):
        assert task.status == "complete", task
        expected = {
            "diamond_end": n**8,
            "tree_final_convergence": 4 * n**8,
            "dag_finalize": 3 * n**8,
        }
        assert task.step(final).result == expected[final]
    assert len({t.task_uuid for t in done}) == 10
