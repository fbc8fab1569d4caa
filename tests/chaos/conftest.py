"""Chaos suite: faults injected into running stacks, bad input, exposure, stale images.

Tests that would poison the session's shared stack (``tasker_stack``) run on a stack of their
own (``own_stack``): same run id (so the run's final sweep covers it), an owner name of its own
and its own watchdog, so it is removed even when this worker dies. Helpers of the harness
self-tests (tests/harness/test_harness.py) are reused for the inner pytest runs.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from chaoslib import CHAOS_DIR

from tasker_testing import cleanup, labels
from tasker_testing import plugin as tasker_plugin
from tasker_testing.stack import TASKER_STACK, Stack, StackSpec


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: fault injection / security suite (nox -s chaos)")
    config.addinivalue_line("markers", "slow: takes minutes (builds images)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CHAOS_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.docker)


# --------------------------------------------------------------------------- own stacks

#: stacks started by ``own_stack`` that are still up: their logs go into failure reports
_OWN_STACKS: dict[str, Stack] = {}


@pytest.fixture(scope="session")
def tasker_images(request: pytest.FixtureRequest) -> dict[str, str]:
    """The run's image tags, as the plugin resolved them for this worker."""
    state = tasker_plugin._state(request)
    return dict(tasker_plugin._images_for_worker(request.config, state))


@pytest.fixture(scope="session")
def start_own_stack(
    request: pytest.FixtureRequest, tasker_images: dict[str, str]
) -> Callable[..., contextlib.AbstractContextManager[Stack]]:
    """``with start_own_stack("name") as stack``: a stack of its own, watchdog-guarded."""
    state = tasker_plugin._state(request)

    @contextlib.contextmanager
    def start(name: str, spec: StackSpec = TASKER_STACK) -> Iterator[Stack]:
        owner = labels.Owner(run_id=state.run_id, worker=f"{state.worker}-{name}")
        also = [state.controller_pid] if state.controller_pid != os.getpid() else []
        log_dir = state.artifacts / "logs" / state.run_id[:8] / owner.worker
        watchdog = cleanup.Watchdog.spawn(owner, also_watch=also, log_path=log_dir / "watchdog.log")
        try:
            stack = Stack(spec, tasker_images, owner).start()
            _OWN_STACKS[owner.worker] = stack
            try:
                yield stack
            finally:
                _OWN_STACKS.pop(owner.worker, None)
                with contextlib.suppress(Exception):
                    stack.save_logs(log_dir)
                stack.stop()
        finally:
            watchdog.release()

    return start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and CHAOS_DIR in Path(str(item.path)).parents:
        for key, stack in list(_OWN_STACKS.items()):
            for name in list(stack.services):
                text = stack.logs(name, tail=tasker_plugin.REPORT_LOG_LINES)
                report.sections.append((f"own stack {key}: {name} log (last 50 lines)", text))
    return report


# --------------------------------------------------------------------------- inner runs


@pytest.fixture
def inner(pytester: pytest.Pytester) -> Iterator[tuple[pytest.Pytester, str]]:
    """A pytester dir and a run id of its own; the run's resources are swept afterwards."""
    run_id = f"c{uuid.uuid4().hex[:7]}"
    yield pytester, run_id
    cleanup.sweep([f"{labels.ROOT}=1", f"{labels.RUN}={run_id}"])
