"""How many xdist workers ``-n auto`` starts: one per stack the machine's cores can run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from tasker_testing import plugin


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_auto_workers_is_one_per_two_cores(cores: int, workers: int) -> None:
    assert plugin.auto_workers(cores) == workers


def test_the_xdist_variable_still_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugin.AUTO_WORKERS_ENV, "3")
    # None hands the decision on to xdist's own hook, which reads the variable
    assert plugin.pytest_xdist_auto_num_workers(cast(Any, SimpleNamespace())) is None


def test_stack_suites_get_one_worker_per_two_usable_cores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv(plugin.AUTO_WORKERS_ENV, raising=False)
    monkeypatch.setattr(plugin.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    config = SimpleNamespace(
        args=["tests/integration"],
        invocation_params=SimpleNamespace(dir=tmp_path),
        rootpath=tmp_path,
    )
    assert plugin.pytest_xdist_auto_num_workers(cast(Any, config)) == 2
    config.args = ["tests/unit"]  # no stacks: xdist's one per core stands
    assert plugin.pytest_xdist_auto_num_workers(cast(Any, config)) is None
