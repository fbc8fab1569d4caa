"""API behaviour: errors in the documented shape, listing, templates, health endpoints."""

from __future__ import annotations

import uuid

import pytest

from tasker_testing.clients import ApiError, OrchestrationClient, WorkerClient
from tasker_testing.plugin import TaskFactory


@pytest.mark.smoke
def test_orchestration_health_endpoints(orchestration_client: OrchestrationClient) -> None:
    for health in (orchestration_client.health(), orchestration_client.live()):
        assert health.ok
        assert health.raw["timestamp"]
    ready = orchestration_client.ready()
    assert ready.ok, ready.raw
    assert ready.checks, "ready lists its checks"
    for check in ready.checks.values():
        assert {"status", "duration_ms"} <= set(check)


@pytest.mark.smoke
def test_worker_health_endpoints(worker_client: WorkerClient) -> None:
    health = worker_client.health()
    assert health.ok
    assert health.raw["worker_id"]
    assert worker_client.live().ok
    assert worker_client.ready().ok


def _error(exc: pytest.ExceptionInfo[ApiError], status: int, code: str) -> None:
    assert exc.value.status == status
    assert exc.value.code == code
    assert exc.value.message


def test_unknown_template_is_404(orchestration_client: OrchestrationClient) -> None:
    with pytest.raises(ApiError) as exc:
        orchestration_client.create_task(
            "no_such_task", "linear_workflow", context={"even_number": 2}
        )
    _error(exc, 404, "NOT_FOUND")


def test_odd_number_is_400(orchestration_client: OrchestrationClient) -> None:
    with pytest.raises(ApiError) as exc:
        orchestration_client.create_task(
            "mathematical_sequence", "linear_workflow", context={"even_number": 3}
        )
    _error(exc, 400, "BAD_REQUEST")


def test_malformed_json_is_400(orchestration_client: OrchestrationClient) -> None:
    with pytest.raises(ApiError) as exc:
        orchestration_client.post_raw("/v1/tasks", b'{"name": ')
    _error(exc, 400, "BAD_REQUEST")


def test_missing_fields_are_400(orchestration_client: OrchestrationClient) -> None:
    with pytest.raises(ApiError) as exc:
        orchestration_client.post_raw("/v1/tasks", b'{"name": "mathematical_sequence"}')
    assert exc.value.status == 400


def test_get_task_malformed_uuid_400_unknown_404(orchestration_client: OrchestrationClient) -> None:
    with pytest.raises(ApiError) as exc:
        orchestration_client.get_task("not-a-uuid")
    _error(exc, 400, "BAD_REQUEST")
    with pytest.raises(ApiError) as exc:
        orchestration_client.get_task(str(uuid.uuid4()))
    _error(exc, 404, "NOT_FOUND")


def test_idempotency_key_same_body_same_task_other_body_409(
    task_factory: TaskFactory, orchestration_client: OrchestrationClient
) -> None:
    key = f"idem-{uuid.uuid4()}"
    correlation = str(uuid.uuid4())
    first = task_factory(idempotency_key=key, correlation_id=correlation)
    again = task_factory(idempotency_key=key, correlation_id=correlation)
    assert again.task_uuid == first.task_uuid
    with pytest.raises(ApiError) as exc:
        task_factory(context={"even_number": 8}, idempotency_key=key, correlation_id=correlation)
    _error(exc, 409, "CONFLICT")


def test_list_tasks_filters_and_paginates(
    task_factory: TaskFactory, orchestration_client: OrchestrationClient
) -> None:
    initiator = f"lister-{uuid.uuid4().hex[:8]}"
    created = {task_factory(initiator=initiator).task_uuid for _ in range(3)}
    page = orchestration_client.list_tasks(initiator=initiator, per_page=2, page=1)
    assert page.pagination.total_count == 3
    assert page.pagination.total_pages == 2
    assert page.pagination.has_next
    assert not page.pagination.has_previous
    rest = orchestration_client.list_tasks(initiator=initiator, per_page=2, page=2)
    assert {t.task_uuid for t in page.tasks + rest.tasks} == created


def test_steps_endpoints(
    task_factory: TaskFactory, orchestration_client: OrchestrationClient
) -> None:
    task = task_factory.run()
    steps = orchestration_client.list_steps(task.task_uuid)
    assert {s.name for s in steps} == {f"linear_step_{i}" for i in range(1, 5)}
    one = orchestration_client.get_step(task.task_uuid, steps[0].step_uuid)
    assert one.step_uuid == steps[0].step_uuid
    assert one.task_uuid == task.task_uuid


def test_templates_are_listed(orchestration_client: OrchestrationClient) -> None:
    listing = orchestration_client.list_templates()
    names = {(t["namespace"], t["name"]) for t in listing["templates"]}
    assert ("linear_workflow", "mathematical_sequence") in names
    assert listing["total_count"] >= 5
    detail = orchestration_client.get_template("linear_workflow", "mathematical_sequence", "1.0.0")
    assert [s["name"] for s in detail["steps"]] == [f"linear_step_{i}" for i in range(1, 5)]
    with pytest.raises(ApiError) as exc:
        orchestration_client.get_template("linear_workflow", "nope", "1.0.0")
    assert exc.value.status == 404


def test_openapi_document(orchestration_client: OrchestrationClient) -> None:
    doc = orchestration_client.openapi()
    assert "/v1/tasks" in doc["paths"]
