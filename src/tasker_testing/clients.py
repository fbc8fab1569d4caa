"""HTTP clients for the orchestration API (:8080) and the worker's health API (:8081).

Depends on nothing else of ours. Rules: timeout 30 s per request; up to 3 retries with
exponential backoff on connection errors and 5xx answers only (never on 4xx, never on a read
timeout); every non-2xx answer becomes an ``ApiError`` carrying the status and the
``{"error": {"code", "message"}}`` body.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self, cast

import httpx
import stamina

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
TERMINAL_TASK_STATES = frozenset({"complete", "error", "cancelled", "resolved_manually"})

JSON = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer: ``status``, the error ``code`` and ``message`` from the body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        method: str = "",
        url: str = "",
        body: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.url = url
        self.body = body
        super().__init__(f"{method} {url} -> {status} {code}: {message}".strip())

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        code, message = "", response.text[:500]
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            err = payload["error"]
            code = str(err.get("code", ""))
            message = str(err.get("message", ""))
        return cls(
            response.status_code,
            code,
            message,
            method=response.request.method,
            url=str(response.request.url),
            body=response.text[:2000],
        )


class WorkflowTimeout(AssertionError):
    """``wait_for_completion`` ran out of time; carries the last task state seen."""

    def __init__(self, task_uuid: str, timeout: float, last: Task | None) -> None:
        self.task_uuid = task_uuid
        self.last = last
        if last is None:
            detail = "the task was never read successfully"
        else:
            lines = [
                f"task status={last.status} execution_status={last.execution_status} "
                f"completion={last.completion_percentage}% steps: total={last.total_steps} "
                f"completed={last.completed_steps} failed={last.failed_steps} "
                f"pending={last.pending_steps} in_progress={last.in_progress_steps}"
            ]
            lines += [f"  step {s.name}: {s.describe()}" for s in last.steps]
            detail = "\n".join(lines)
        super().__init__(f"task {task_uuid} not finished after {timeout:.1f}s\n{detail}")


# --------------------------------------------------------------------------- typed results


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


@dataclass(frozen=True)
class Step:
    step_uuid: str
    task_uuid: str
    name: str
    current_state: str
    attempts: int
    max_attempts: int
    retry_eligible: bool | None
    results: Any
    last_error: Any
    last_failure_at: str | None
    completed_at: str | None
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            step_uuid=str(data.get("step_uuid", "")),
            task_uuid=str(data.get("task_uuid", "")),
            name=str(data.get("name", "")),
            current_state=str(data.get("current_state", "")),
            attempts=_int(data.get("attempts")),
            max_attempts=_int(data.get("max_attempts")),
            retry_eligible=data.get("retry_eligible"),
            results=data.get("results"),
            last_error=data.get("last_error"),
            last_failure_at=_opt_str(data.get("last_failure_at")),
            completed_at=_opt_str(data.get("completed_at")),
            raw=dict(data),
        )

    @property
    def result(self) -> Any:
        """The step's value (``results.result``), None until it completed."""
        return self.results.get("result") if isinstance(self.results, dict) else None

    @property
    def error(self) -> Any:
        """The step's last error (``results.error`` or ``last_error``), if any."""
        if isinstance(self.results, dict) and "error" in self.results:
            return self.results["error"]
        return self.last_error

    def describe(self) -> str:
        results = repr(self.results)
        if len(results) > 300:
            results = results[:300] + "..."
        return (
            f"{self.current_state} attempts={self.attempts}/{self.max_attempts} results={results}"
        )


@dataclass(frozen=True)
class Task:
    task_uuid: str
    name: str
    namespace: str
    version: str
    status: str
    context: Any
    total_steps: int
    completed_steps: int
    failed_steps: int
    pending_steps: int
    in_progress_steps: int
    ready_steps: int
    completion_percentage: float
    execution_status: str | None
    recommended_action: str | None
    health_status: str | None
    correlation_id: str | None
    tags: list[str]
    completed_at: str | None
    steps: list[Step]
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Task:
        return cls(
            task_uuid=str(data.get("task_uuid", "")),
            name=str(data.get("name", "")),
            namespace=str(data.get("namespace", "")),
            version=str(data.get("version", "")),
            status=str(data.get("status", "")),
            context=data.get("context"),
            total_steps=_int(data.get("total_steps")),
            completed_steps=_int(data.get("completed_steps")),
            failed_steps=_int(data.get("failed_steps")),
            pending_steps=_int(data.get("pending_steps")),
            in_progress_steps=_int(data.get("in_progress_steps")),
            ready_steps=_int(data.get("ready_steps")),
            completion_percentage=float(data.get("completion_percentage") or 0),
            execution_status=_opt_str(data.get("execution_status")),
            recommended_action=_opt_str(data.get("recommended_action")),
            health_status=_opt_str(data.get("health_status")),
            correlation_id=_opt_str(data.get("correlation_id")),
            tags=[str(t) for t in data.get("tags") or []],
            completed_at=_opt_str(data.get("completed_at")),
            steps=[Step.from_json(s) for s in data.get("steps") or []],
            raw=dict(data),
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_TASK_STATES

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(
            f"task {self.task_uuid} has no step {name!r}: {[s.name for s in self.steps]}"
        )


@dataclass(frozen=True)
class Pagination:
    page: int
    per_page: int
    total_count: int
    total_pages: int
    has_next: bool
    has_previous: bool


@dataclass(frozen=True)
class TaskList:
    tasks: list[Task]
    pagination: Pagination
    raw: JSON = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskList:
        pag = data.get("pagination") or {}
        return cls(
            tasks=[Task.from_json(t) for t in data.get("tasks") or []],
            pagination=Pagination(
                page=_int(pag.get("page")),
                per_page=_int(pag.get("per_page")),
                total_count=_int(pag.get("total_count")),
                total_pages=_int(pag.get("total_pages")),
                has_next=bool(pag.get("has_next")),
                has_previous=bool(pag.get("has_previous")),
            ),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Health:
    """A health answer. ``http_status`` is kept because ``/ready`` answers 503 when not ready."""

    http_status: int
    status: str
    checks: JSON
    raw: JSON = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.http_status == 200

    @classmethod
    def from_response(cls, response: httpx.Response) -> Health:
        try:
            data = response.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        checks = data.get("checks")
        return cls(
            http_status=response.status_code,
            status=str(data.get("status", "")),
            checks=checks if isinstance(checks, dict) else {},
            raw=data,
        )


# --------------------------------------------------------------------------- transport


def _retryable(exc: Exception) -> bool:
    """Connection trouble and 5xx are retried; 4xx and read timeouts are not."""
    if isinstance(exc, ApiError):
        return exc.status >= 500
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = DEFAULT_RETRIES
    wait_initial: float = 0.1
    wait_max: float = 2.0
    wait_jitter: float = 0.1


class _BaseClient:
    def __init__(
        self,
        base_url: str | Callable[[], str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        #: a callable lets a client follow a service whose published port changed (restart)
        self._base_url = base_url
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(timeout=timeout, transport=transport)

    @property
    def base_url(self) -> str:
        url = self._base_url() if callable(self._base_url) else self._base_url
        return url.rstrip("/")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request with the retry rules; returns 2xx responses, raises ``ApiError`` else."""
        policy = self.retry
        for attempt in stamina.retry_context(
            on=_retryable,
            attempts=policy.retries + 1,
            timeout=None,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
        ):
            with attempt:
                response = self._http.request(method, self.base_url + path, **kwargs)
                if response.status_code >= 400:
                    raise ApiError.from_response(response)
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, method: str, path: str, **kwargs: Any) -> JSON:
        data = self._send(method, path, **kwargs).json()
        if not isinstance(data, dict):
            raise ApiError(200, "BAD_SHAPE", f"expected a JSON object, got {type(data).__name__}")
        return cast(JSON, data)

    def _health(self, path: str) -> Health:
        """Health endpoints: no retries, and 503 is an answer, not an error."""
        return Health.from_response(self._http.get(self.base_url + path))


class OrchestrationClient(_BaseClient):
    """The orchestration API on :8080."""

    def create_task(
        self,
        name: str,
        namespace: str,
        version: str = "1.0.0",
        context: Mapping[str, Any] | None = None,
        *,
        initiator: str = "tasker-testing",
        source_system: str = "pytest",
        reason: str = "integration test",
        tags: Iterable[str] = (),
        idempotency_key: str | None = None,
        priority: int | None = None,
        correlation_id: str | None = None,
        **extra: Any,
    ) -> Task:
        body: JSON = {
            "name": name,
            "namespace": namespace,
            "version": version,
            "context": dict(context or {}),
            "initiator": initiator,
            "source_system": source_system,
            "reason": reason,
            "tags": list(tags),
            "requested_at": datetime.now(UTC).isoformat(),
            "correlation_id": correlation_id or str(uuid.uuid4()),
        }
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        if priority is not None:
            body["priority"] = priority
        body.update(extra)
        return Task.from_json(self._json("POST", "/v1/tasks", json=body))

    def post_raw(
        self, path: str, content: bytes | str, content_type: str = "application/json"
    ) -> JSON:
        """POST an arbitrary body (for malformed-input tests)."""
        return self._json("POST", path, content=content, headers={"content-type": content_type})

    def get_task(self, task_uuid: str) -> Task:
        return Task.from_json(self._json("GET", f"/v1/tasks/{task_uuid}"))

    def list_tasks(self, **query: Any) -> TaskList:
        params = {k: v for k, v in query.items() if v is not None}
        return TaskList.from_json(self._json("GET", "/v1/tasks", params=params))

    def list_steps(self, task_uuid: str) -> list[Step]:
        data = self._send("GET", f"/v1/tasks/{task_uuid}/workflow_steps").json()
        items = data.get("steps", data) if isinstance(data, dict) else data
        return [Step.from_json(s) for s in items]

    def get_step(self, task_uuid: str, step_uuid: str) -> Step:
        return Step.from_json(
            self._json("GET", f"/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}")
        )

    def list_templates(self) -> JSON:
        return self._json("GET", "/v1/templates")

    def get_template(self, namespace: str, name: str, version: str) -> JSON:
        return self._json("GET", f"/v1/templates/{namespace}/{name}/{version}")

    def openapi(self) -> JSON:
        return self._json("GET", "/api-docs/openapi.json")

    def health(self) -> Health:
        return self._health("/health")

    def live(self) -> Health:
        return self._health("/live")

    def ready(self) -> Health:
        return self._health("/ready")

    def wait_for_completion(
        self,
        task_uuid: str,
        timeout: float = 30.0,
        *,
        poll_interval: float = 0.025,
        max_poll_interval: float = 0.25,
        until: Iterable[str] = TERMINAL_TASK_STATES,
    ) -> Task:
        """Poll the task until its status is in ``until`` (default: any terminal state).

        Polls start every ``poll_interval`` and slow down by a quarter each time up to
        ``max_poll_interval``, so quick workflows are seen at once while many waiting clients do
        not flood the API. On timeout raises ``WorkflowTimeout`` with the last task state and
        every step's state.
        """
        wanted = frozenset(until)
        deadline = time.monotonic() + timeout
        last: Task | None = None
        while True:
            try:
                last = self.get_task(task_uuid)
            except (ApiError, httpx.TransportError):
                if last is None and time.monotonic() >= deadline:
                    raise
            if last is not None and last.status in wanted:
                return last
            if time.monotonic() >= deadline:
                raise WorkflowTimeout(task_uuid, timeout, last)
            time.sleep(poll_interval)
            poll_interval = min(poll_interval * 1.25, max_poll_interval)


class WorkerClient(_BaseClient):
    """The worker's health API on :8081."""

    def health(self) -> Health:
        return self._health("/health")

    def live(self) -> Health:
        return self._health("/health/live")

    def ready(self) -> Health:
        return self._health("/health/ready")
