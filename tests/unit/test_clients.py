"""Client rules without Docker: retries on connection errors and 5xx only, error shape, waits."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import httpx
import pytest

from tasker_testing.clients import (
    ApiError,
    OrchestrationClient,
    RetryPolicy,
    WorkerClient,
    WorkflowTimeout,
)

NO_WAIT = RetryPolicy(wait_initial=0.0, wait_max=0.0, wait_jitter=0.0)


def _task(status: str = "complete", **extra: object) -> dict[str, object]:
    return {
        "task_uuid": "0190f0d0-0000-7000-8000-000000000001",
        "name": "mathematical_sequence",
        "namespace": "linear_workflow",
        "version": "1.0.0",
        "status": status,
        "total_steps": 2,
        "completed_steps": 1,
        "failed_steps": 0,
        "completion_percentage": 50.0,
        "steps": [
            {"name": "a", "current_state": "complete", "attempts": 1, "max_attempts": 3},
            {"name": "b", "current_state": "in_progress", "attempts": 1, "max_attempts": 3},
        ],
        **extra,
    }


class Recorder:
    """A MockTransport handler answering from a script of responses/exceptions."""

    def __init__(self, *script: httpx.Response | Exception) -> None:
        self.script = list(script)
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        return item


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> OrchestrationClient:
    return OrchestrationClient(
        "http://127.0.0.1:1", retry=NO_WAIT, transport=httpx.MockTransport(handler)
    )


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def test_5xx_is_retried_three_times_then_raised() -> None:
    rec = Recorder(_error(503, "UNAVAILABLE", "db down"))
    with pytest.raises(ApiError) as info:
        _client(rec).get_task("x")
    assert len(rec.calls) == 4, "1 try + 3 retries"
    assert (info.value.status, info.value.code, info.value.message) == (
        503,
        "UNAVAILABLE",
        "db down",
    )


def test_5xx_then_success_returns_the_task() -> None:
    rec = Recorder(_error(500, "INTERNAL", "boom"), httpx.Response(200, json=_task()))
    task = _client(rec).get_task("x")
    assert task.status == "complete"
    assert len(rec.calls) == 2


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_4xx_is_never_retried(status: int) -> None:
    rec = Recorder(_error(status, "BAD_REQUEST", "nope"), httpx.Response(200, json=_task()))
    with pytest.raises(ApiError) as info:
        _client(rec).get_task("x")
    assert len(rec.calls) == 1
    assert info.value.status == status
    assert info.value.code == "BAD_REQUEST"


def test_connection_errors_are_retried() -> None:
    rec = Recorder(
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("closed"),
        httpx.Response(200, json=_task()),
    )
    assert _client(rec).get_task("x").status == "complete"
    assert len(rec.calls) == 3


def test_read_timeouts_are_not_retried() -> None:
    rec = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(httpx.ReadTimeout):
        _client(rec).get_task("x")
    assert len(rec.calls) == 1


def test_real_refused_connection_on_localhost_is_retried_then_raised() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OrchestrationClient(f"http://127.0.0.1:{port}", retry=NO_WAIT)
    with pytest.raises(httpx.ConnectError):
        client.get_task("x")


def test_non_json_error_body_still_gives_an_api_error() -> None:
    rec = Recorder(httpx.Response(404, text="plain not found"))
    with pytest.raises(ApiError) as info:
        _client(rec).get_task("x")
    assert info.value.status == 404
    assert info.value.code == ""
    assert "plain not found" in info.value.message


def test_create_task_sends_the_documented_body() -> None:
    rec = Recorder(httpx.Response(201, json=_task("pending")))
    task = _client(rec).create_task(
        "mathematical_sequence", "linear_workflow", context={"even_number": 6}, tags=["t"]
    )
    assert task.status == "pending"
    body = json.loads(rec.calls[0].content)
    assert rec.calls[0].method == "POST"
    assert rec.calls[0].url.path == "/v1/tasks"
    assert body["context"] == {"even_number": 6}
    assert body["tags"] == ["t"]
    for key in ("initiator", "source_system", "reason", "requested_at", "correlation_id"):
        assert body[key]


def test_typed_results() -> None:
    task = _client(Recorder(httpx.Response(200, json=_task()))).get_task("x")
    assert task.total_steps == 2
    assert task.completion_percentage == 50.0
    assert task.step("b").current_state == "in_progress"
    assert task.raw["name"] == "mathematical_sequence"
    with pytest.raises(KeyError):
        task.step("zzz")


def test_wait_for_completion_returns_on_terminal_state() -> None:
    rec = Recorder(
        httpx.Response(200, json=_task("steps_in_process")),
        httpx.Response(200, json=_task("complete")),
    )
    task = _client(rec).wait_for_completion("x", timeout=5, poll_interval=0)
    assert task.status == "complete"


def test_wait_for_completion_timeout_names_every_step() -> None:
    rec = Recorder(httpx.Response(200, json=_task("steps_in_process")))
    with pytest.raises(WorkflowTimeout) as info:
        _client(rec).wait_for_completion("x", timeout=0.05, poll_interval=0.01)
    text = str(info.value)
    assert "status=steps_in_process" in text
    assert "step a: complete" in text
    assert "step b: in_progress" in text
    assert info.value.last is not None


def test_ready_503_is_an_answer_not_an_error() -> None:
    rec = Recorder(
        httpx.Response(503, json={"status": "not_ready", "checks": {"db": {"status": "down"}}})
    )
    client = WorkerClient("http://127.0.0.1:1", transport=httpx.MockTransport(rec))
    ready = client.ready()
    assert not ready.ok
    assert ready.checks["db"]["status"] == "down"
    assert rec.calls[0].url.path == "/health/ready"
    assert len(rec.calls) == 1


def test_base_url_may_follow_a_moving_port() -> None:
    ports = iter([1111, 2222])
    rec = Recorder(httpx.Response(200, json={"status": "ok"}))
    client = WorkerClient(
        lambda: f"http://127.0.0.1:{next(ports)}/", transport=httpx.MockTransport(rec)
    )
    client.health()
    client.health()
    assert [c.url.port for c in rec.calls] == [1111, 2222]
