"""API fuzzing with schemathesis against the running orchestration's own OpenAPI document.

Bounded: at most MAX_EXAMPLES generated requests per operation and TOTAL_S seconds overall.
Positive and negative (schema-violating) examples. Every answer must be below 500, and
every error answer must have the documented shape
``{"error": {"code": str, "message": str}}``. Runs on a stack of its own (it creates tasks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
import schemathesis  # the chaos dependency group: a missing install fails, never skips

from tasker_testing.stack import Stack

hypothesis = pytest.importorskip("hypothesis")

MAX_EXAMPLES = 30
TOTAL_S = 180.0


@pytest.fixture(scope="module")
def stack(start_own_stack: Callable[..., AbstractContextManager[Stack]]) -> Iterator[Stack]:
    with start_own_stack("fuzz") as own:
        yield own


def _problem(status: int, body: bytes) -> str | None:
    if status >= 500:
        return f"server error {status}"
    if status < 400:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{status} with a non-JSON body"
    err = payload.get("error") if isinstance(payload, dict) else None
    if not (
        isinstance(err, dict)
        and isinstance(err.get("code"), str)
        and isinstance(err.get("message"), str)
        and err["code"]
        and err["message"]
    ):
        return f"{status} not in the documented error shape"
    return None


def test_fuzz_the_api_no_5xx_and_documented_errors(stack: Stack) -> None:
    base = stack.orchestration_url
    doc = httpx.get(f"{base}/api-docs/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(doc)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 4, [op.label for op in operations]
    findings: list[dict[str, Any]] = []
    calls: dict[str, int] = {}
    skipped: list[str] = []
    deadline = time.monotonic() + TOTAL_S
    with httpx.Client(timeout=10) as http:
        for op, mode in [(o, m) for o in operations for m in schemathesis.GenerationMode]:
            case_mode = mode

            @hypothesis.settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,  # the same requests every run: a failure reproduces
                suppress_health_check=list(hypothesis.HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=case_mode))
            def check(case: Any) -> None:
                if time.monotonic() > deadline:
                    return
                kwargs = case.as_transport_kwargs(base_url=base)
                response = http.request(
                    kwargs["method"],
                    kwargs["url"],
                    params=kwargs.get("params"),
                    headers=kwargs.get("headers"),
                    json=kwargs.get("json"),
                    content=kwargs.get("data") if not kwargs.get("json") else None,
                )
                key = f"{case.operation.label} ({case_mode.value})"  # noqa: B023 (called at once)
                calls[key] = calls.get(key, 0) + 1
                problem = _problem(response.status_code, response.content)
                if problem and len(findings) < 50:
                    findings.append(
                        {
                            "operation": case.operation.label,
                            "problem": problem,
                            "request": f"{kwargs['method']} {response.request.url}",
                            "body": kwargs.get("json", kwargs.get("data")),
                            "response": response.text[:300],
                        }
                    )

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                skipped.append(f"{op.label} ({mode.value})")  # nothing to violate
    print(f"fuzzed {sum(calls.values())} requests: {calls}; no negative cases: {skipped}")
    assert sum(calls.values()) >= len(operations), "the time bound left operations unfuzzed"
    assert not findings, "API problems found:\n" + "\n".join(
        json.dumps(f, default=str) for f in findings
    )
