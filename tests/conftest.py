"""Marks by directory: tests/integration and tests/harness need a Docker engine."""

from __future__ import annotations

from pathlib import Path

import pytest

_DOCKER_DIRS = ("integration", "harness")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).parts
        if any(d in parts for d in _DOCKER_DIRS):
            item.add_marker(pytest.mark.docker)
